//! `USING postgres` (aliases `postgresql`, `aurora_postgresql`): tables in PostgreSQL and
//! Aurora PostgreSQL, read and written over tokio-postgres.
//!
//! ```sql
//! CREATE TABLE shop.users USING postgres
//!   OPTIONS (url 'postgres://db.internal:5432/app', dbtable 'public.users',
//!            user 'bowman', password '${env:APP_DB_PASSWORD}');
//! ```
//!
//! [`PgDatabase`] is also the wire path of the Redshift connector, which speaks the same protocol.

pub mod decode;
pub mod pool;
pub mod tls;

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, LazyLock, Mutex};

use async_trait::async_trait;
use bowman_connector::{Connector, ConnectorError, ErrorKind, OptionSpec};
use bowman_connector_remote::options::{self, RemoteOptions, RemoteSource, strip_jdbc};
use bowman_connector_remote::table::{quote_ident, quote_reference};
use bowman_connector_remote::text::{InsertRows, TextFlavor};
use bowman_connector_remote::table::{open_table, parse_reference};
use bowman_connector_remote::{RemoteDatabase, redact};
use bytes::BytesMut;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::common::TableReference;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::CreateExternalTable;
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::sql::unparser::dialect::{Dialect, PostgreSqlDialect};
use futures::{StreamExt, TryStreamExt, pin_mut};
use bowman_connector_remote::tls::TlsMode;
use tokio_postgres::Config;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::{Format, IsNull, ToSql, Type, to_sql_checked};

use crate::decode::BatchDecoder;
use crate::pool::{ConnectFailure, PgPool};

/// Rows per Arrow batch read from PostgreSQL.
const BATCH_ROWS: usize = 8192;

/// Which server speaks the protocol; decides names in messages and EXPLAIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Postgres,
    Redshift,
}

impl Flavor {
    fn kind(self) -> &'static str {
        match self {
            Flavor::Postgres => "postgres",
            Flavor::Redshift => "redshift",
        }
    }

    fn product(self) -> &'static str {
        match self {
            Flavor::Postgres => "PostgreSQL",
            Flavor::Redshift => "Redshift",
        }
    }
}

/// One PostgreSQL (or Redshift) database as seen through one set of credentials.
#[derive(Debug, Clone)]
pub struct PgDatabase {
    flavor: Flavor,
    pool: Arc<PgPool>,
    describe: String,
    identity: String,
    secrets: Vec<String>,
    batch_size: usize,
    liveness_interval: Option<std::time::Duration>,
}

static POOLS: LazyLock<Mutex<HashMap<String, Arc<PgPool>>>> = LazyLock::new(Default::default);

/// The connection settings of a table's options (URL, then `user` / `password` options).
pub fn pg_config(o: &RemoteOptions, flavor: Flavor) -> Result<Config, ConnectorError> {
    let url = strip_jdbc(&o.url);
    // Redshift's JDBC URLs say `redshift://`; the protocol is PostgreSQL's.
    let url = match url.split_once("://") {
        Some(("redshift" | "postgresql" | "postgres", rest)) => format!("postgresql://{rest}"),
        _ => url.to_string(),
    };
    let mut config: Config = url.parse().map_err(|e| {
        ConnectorError::new(
            ErrorKind::InvalidOption,
            format!("url '{}' is not a {} URL ({e}); write postgres://host:port/database", o.url, flavor.product()),
        )
    })?;
    if let Some(u) = &o.user {
        config.user(u);
    }
    if let Some(p) = &o.password {
        config.password(p);
    }
    if config.get_user().is_none() {
        config.user("postgres");
    }
    if config.get_hosts().is_empty() {
        config.host("127.0.0.1");
    }
    config.connect_timeout(o.connect_timeout);
    config.application_name("bowman");
    if let Some(t) = o.query_timeout {
        config.options(format!("-c statement_timeout={}", t.as_millis()));
    }
    config.ssl_mode(match o.tls.mode_or(TlsMode::Prefer) {
        TlsMode::Disable => SslMode::Disable,
        TlsMode::Prefer => SslMode::Prefer,
        TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
    });
    Ok(config)
}

/// The TLS connector a table's `sslmode` asks for (libpq's default, `prefer`, when none is given).
pub fn pg_tls(o: &RemoteOptions, table: &str) -> Result<Option<tls::MakeRustls>, ConnectorError> {
    match o.tls.mode_or(TlsMode::Prefer) {
        TlsMode::Disable => Ok(None),
        mode => Ok(Some(tls::MakeRustls(o.tls.client_config(mode, table)?))),
    }
}

fn host_port(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

impl PgDatabase {
    /// The database a table's options name, sharing one pool with every table that names the
    /// same server, database, user and password.
    pub fn open(o: &RemoteOptions, flavor: Flavor, table: &str) -> Result<Arc<Self>, ConnectorError> {
        let config = pg_config(o, flavor)?;
        let tls = pg_tls(o, table)?;
        let db = config.get_dbname().unwrap_or("postgres").to_string();
        let user = config.get_user().unwrap_or_default().to_string();
        let describe = format!("{}/{db}", host_port(&config));
        let identity = format!("{}://{user}@{describe}", flavor.kind());
        let mut h = DefaultHasher::new();
        (o.password.as_deref(), o.query_timeout, o.connect_timeout, &o.tls).hash(&mut h);
        let key = format!("{identity}#{:x}", h.finish());
        let pool = POOLS
            .lock()
            .expect("pools")
            .entry(key)
            .or_insert_with(|| PgPool::new(config, tls, o.pool_size, o.connect_timeout))
            .clone();
        Ok(Arc::new(PgDatabase {
            flavor,
            pool,
            describe,
            identity,
            secrets: o.secrets(),
            batch_size: o.batch_size,
            liveness_interval: o.liveness_interval,
        }))
    }

    /// A failure as the user should see it: what failed, where, with the server's SQLSTATE
    /// when it sent one, and never a password.
    pub fn error(&self, e: tokio_postgres::Error, table: &str, connecting: bool) -> DataFusionError {
        let product = self.flavor.product();
        let err = if let Some(db) = e.as_db_error() {
            let code = db.code().code().to_string();
            let kind = match &code[..2] {
                "28" => ErrorKind::AccessDenied,
                "3D" | "42" if code == "42P01" || code == "3D000" => ErrorKind::NotFound,
                "08" => ErrorKind::Unreachable,
                "0A" => ErrorKind::Unsupported,
                _ => ErrorKind::Io,
            };
            let mut msg = format!("{product} at {} (table {table}): {}", self.describe, db.message());
            if let Some(d) = db.detail() {
                msg.push_str(&format!(" ({d})"));
            }
            ConnectorError::new(kind, msg).with_sqlstate(code)
        } else if connecting {
            let source = std::error::Error::source(&e).map(|s| format!(" ({s})")).unwrap_or_default();
            let hint = bowman_connector_remote::tls::handshake_hint(&format!("{e:?}{source}"))
                .unwrap_or("check the url and that the server accepts connections");
            ConnectorError::new(
                ErrorKind::Unreachable,
                format!("cannot connect to {product} at {} for table {table}: {e}{source}; {hint}", self.describe),
            )
        } else if e.is_closed() {
            ConnectorError::new(
                ErrorKind::ConnectionLost,
                format!("the connection to {product} at {} closed while reading table {table}", self.describe),
            )
        } else {
            ConnectorError::new(ErrorKind::ConnectionLost, format!("{product} at {} (table {table}): {e}", self.describe))
        };
        let message = redact(&err.message, &self.secrets);
        if connecting {
            // Operators see failed connections in the server log; the message never holds a password.
            tracing::warn!(db = %self.describe, %table, error = %message, "remote database connection failed");
        }
        DataFusionError::External(Box::new(ConnectorError { message, ..err }))
    }

    /// A pooled connection, or a clear error (08001 / the server's own code, e.g. 28P01).
    pub async fn connect(&self, table: &str) -> Result<pool::PooledClient> {
        self.pool.get().await.map_err(|f| match f {
            ConnectFailure::Postgres(e) => self.error(e, table, true),
            ConnectFailure::Timeout(why) => DataFusionError::External(Box::new(ConnectorError::new(
                ErrorKind::Unreachable,
                format!("cannot connect to {} at {} for table {table}: {why}", self.flavor.product(), self.describe),
            ))),
        })
    }

    /// The columns of a table or query, with numeric precision and scale where the catalog has them.
    pub async fn discover(&self, source: &RemoteSource, table: &str) -> Result<Schema> {
        let client = self.connect(table).await?;
        let from = match source {
            RemoteSource::Table(t) => quote_reference(self, &self.table_reference(t)),
            RemoteSource::Query(q) => format!("({q}) AS bowman_query"),
        };
        let stmt = client.prepare(&format!("SELECT * FROM {from}")).await.map_err(|e| self.error(e, table, false))?;
        let mut typmods: HashMap<String, i32> = HashMap::new();
        if let RemoteSource::Table(_) = source {
            let rows = client
                .query(
                    "SELECT attname::text, atttypmod FROM pg_catalog.pg_attribute \
                     WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped",
                    &[&from],
                )
                .await
                .map_err(|e| self.error(e, table, false))?;
            for r in rows {
                typmods.insert(r.get(0), r.get(1));
            }
        }
        let mut fields = Vec::new();
        for c in stmt.columns() {
            let typmod = typmods.get(c.name()).copied().unwrap_or(-1);
            let t = decode::arrow_type(c.type_(), typmod).ok_or_else(|| {
                DataFusionError::External(Box::new(ConnectorError::new(
                    ErrorKind::Unsupported,
                    format!(
                        "column {} of {table} has the {} type {}, which Bowman cannot read yet; use a query option that casts it (e.g. {}::text)",
                        c.name(),
                        self.flavor.product(),
                        c.type_().name(),
                        c.name()
                    ),
                )))
            })?;
            fields.push(Field::new(c.name(), t, true));
        }
        client.release();
        Ok(Schema::new(fields))
    }

    /// Stream the rows of one statement, decoded into `schema`.
    pub fn stream(self: Arc<Self>, sql: String, schema: SchemaRef, table: String) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStream::builder(schema.clone(), 2);
        let tx = builder.tx();
        builder.spawn(async move {
            let client = self.connect(&table).await?;
            tracing::debug!(db = %self.describe, %sql, "remote query");
            let params: [&(dyn ToSql + Sync); 0] = [];
            let rows = client.query_raw(sql.as_str(), params).await.map_err(|e| self.error(e, &table, false))?;
            pin_mut!(rows);
            let mut decoder: Option<BatchDecoder> = None;
            while let Some(row) = rows.next().await {
                let row = row.map_err(|e| self.error(e, &table, false))?;
                let d = match &mut decoder {
                    Some(d) => d,
                    None => {
                        let types: Vec<Type> = row.columns().iter().map(|c| c.type_().clone()).collect();
                        decoder.insert(BatchDecoder::new(schema.clone(), &types)?)
                    }
                };
                d.push_row(&row)?;
                if d.rows() >= BATCH_ROWS {
                    let batch = d.finish()?;
                    if tx.send(Ok(batch)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            if let Some(d) = &mut decoder {
                if d.rows() > 0 {
                    let _ = tx.send(Ok(d.finish()?)).await;
                }
            }
            client.release();
            Ok(())
        });
        builder.build()
    }

    async fn insert_rows(&self, target: &TableReference, mut data: SendableRecordBatchStream, table: &str) -> Result<u64> {
        let mut client = self.connect(table).await?;
        let tx = client.transaction().await.map_err(|e| self.error(e, table, false))?;
        let target_sql = quote_reference(self, target);
        let mut total = 0u64;
        while let Some(batch) = data.try_next().await? {
            let rows = InsertRows::new(&batch, TextFlavor::Postgres, self.batch_size, |c| quote_ident(self, c))?;
            for chunk in rows.chunks {
                let mut sql = format!("INSERT INTO {target_sql} ({}) VALUES ", rows.columns_sql);
                let mut params: Vec<TextParam> = Vec::with_capacity(chunk.len() * rows.texts.len());
                for row in chunk.clone() {
                    if row > chunk.start {
                        sql.push_str(", ");
                    }
                    sql.push('(');
                    for (c, col) in rows.texts.iter().enumerate() {
                        if c > 0 {
                            sql.push_str(", ");
                        }
                        params.push(TextParam(col[row].as_deref()));
                        sql.push_str(&format!("${}", params.len()));
                    }
                    sql.push(')');
                }
                let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                total += tx.execute(sql.as_str(), &refs).await.map_err(|e| self.error(e, table, false))?;
            }
        }
        tx.commit().await.map_err(|e| self.error(e, table, false))?;
        client.release();
        Ok(total)
    }
}

/// A parameter sent in PostgreSQL's text format, which the server parses as the column's type
/// (so one encoding serves numeric, json, uuid, arrays, timestamps...). `None` is NULL.
#[derive(Debug)]
struct TextParam<'a>(Option<&'a [u8]>);

impl ToSql for TextParam<'_> {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            Some(v) => {
                out.extend_from_slice(v);
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// Functions whose PostgreSQL meaning matches DataFusion's.
const PG_FUNCTIONS: &[&str] = &[
    "lower", "upper", "abs", "coalesce", "nullif", "btrim", "ltrim", "rtrim", "length", "character_length",
    "char_length", "substr", "round", "floor", "ceil", "date_trunc",
];

#[async_trait]
impl RemoteDatabase for PgDatabase {
    fn kind(&self) -> &'static str {
        self.flavor.kind()
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn identity(&self) -> String {
        self.identity.clone()
    }

    fn dialect(&self) -> Arc<dyn Dialect> {
        Arc::new(PostgreSqlDialect {})
    }

    fn table_reference(&self, dbtable: &str) -> TableReference {
        parse_reference(dbtable, true)
    }

    fn supports_function(&self, name: &str) -> bool {
        PG_FUNCTIONS.contains(&name) && !(self.flavor == Flavor::Redshift && name == "btrim")
    }

    fn query(&self, sql: String, schema: SchemaRef, table: String) -> Result<SendableRecordBatchStream> {
        Ok(Arc::new(self.clone()).stream(sql, schema, table))
    }

    async fn ping(&self) -> Result<()> {
        let product = self.flavor.product();
        let why = match self.pool.probe().await {
            Ok(true) => return Ok(()),
            // The server answered, if only with an error (too many clients, shutting down):
            // it is alive, and the statement waiting on it goes on.
            Err(e) if e.as_db_error().is_some() => return Ok(()),
            Ok(false) => format!("a new connection got no answer within {:?}", self.pool.connect_timeout()),
            Err(e) => {
                let source = std::error::Error::source(&e).map(|s| format!(" ({s})")).unwrap_or_default();
                format!("a new connection failed: {e}{source}")
            }
        };
        Err(DataFusionError::External(Box::new(ConnectorError::new(
            ErrorKind::ConnectionLost,
            redact(&format!("{product} at {} stopped answering: {why}", self.describe), &self.secrets),
        ))))
    }

    fn liveness_interval(&self) -> Option<std::time::Duration> {
        self.liveness_interval
    }

    async fn insert(&self, table: &TableReference, data: SendableRecordBatchStream, display: &str) -> Result<u64> {
        self.insert_rows(table, data, display).await
    }
}

pub const POSTGRES_OPTIONS: &[OptionSpec] = options::REMOTE_OPTIONS;

/// The `postgres` connector.
#[derive(Debug, Default)]
pub struct PostgresConnector;

#[async_trait]
impl TableProviderFactory for PostgresConnector {
    async fn create(&self, _state: &dyn Session, cmd: &CreateExternalTable) -> Result<Arc<dyn TableProvider>> {
        let name = cmd.name.to_string();
        let o = RemoteOptions::parse(&cmd.options, &name)?;
        let db = PgDatabase::open(&o, Flavor::Postgres, &name)?;
        let discover = db.discover(&o.source, &name);
        open_table(cmd, db.clone(), o.clone(), discover).await
    }
}

#[async_trait]
impl Connector for PostgresConnector {
    fn names(&self) -> &'static [&'static str] {
        &["postgres", "postgresql", "aurora_postgresql"]
    }

    fn options(&self) -> &'static [OptionSpec] {
        POSTGRES_OPTIONS
    }

    fn split_options(&self, options: &BTreeMap<String, String>) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        options::split_options(self.options(), options)
    }

    async fn validate(&self, _state: &dyn Session, cmd: &CreateExternalTable) -> Result<()> {
        let name = cmd.name.to_string();
        let o = RemoteOptions::parse(&cmd.options, &name)?;
        PgDatabase::open(&o, Flavor::Postgres, &name)?.discover(&o.source, &name).await.map(|_| ())
    }
}

