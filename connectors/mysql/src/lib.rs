//! `USING mysql` (aliases `aurora_mysql`, `mariadb`): tables in MySQL, Aurora MySQL and MariaDB,
//! read and written over mysql_async.
//!
//! ```sql
//! CREATE TABLE shop.orders USING mysql
//!   OPTIONS (url 'mysql://db.internal:3306/shop', dbtable 'orders', user 'bowman', password '...');
//! ```
//!
//! Rows are read with the text protocol (the statement carries its literals, printed and
//! escaped by DataFusion's unparser) and parsed into Arrow by [`TextBatchBuilder`]. Every
//! connection runs with `NO_BACKSLASH_ESCAPES`, so a backslash in a pushed-down string literal
//! is just a character, and with `time_zone = '+00:00'`, so `TIMESTAMP` columns read as UTC.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, LazyLock, Mutex};
use std::path::PathBuf;
use std::time::Duration;

use bowman_connector_remote::tls::{TlsMode, TlsOptions};

use async_trait::async_trait;
use bowman_connector::{Connector, ConnectorError, ErrorKind, OptionSpec};
use bowman_connector_remote::options::{self, RemoteOptions, RemoteSource, strip_jdbc};
use bowman_connector_remote::table::{open_table, parse_reference, quote_ident, quote_reference};
use bowman_connector_remote::text::{InsertRows, TextBatchBuilder, TextFlavor};
use bowman_connector_remote::{RemoteDatabase, redact};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::common::TableReference;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{CreateExternalTable, JoinType};
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::sql::unparser::dialect::{Dialect, MySqlDialect};
use futures::TryStreamExt;
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::prelude::Queryable;
use mysql_async::{Column, Conn, Opts, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts, SslOpts, TxOpts, Value};

const BATCH_ROWS: usize = 8192;
/// The character set number MySQL reports for binary strings.
const BINARY_CHARSET: u16 = 63;

/// One MySQL database as seen through one set of credentials.
#[derive(Debug, Clone)]
pub struct MySqlDatabase {
    opts: Opts,
    pool_key: String,
    describe: String,
    identity: String,
    secrets: Vec<String>,
    connect_timeout: Duration,
    query_timeout: Option<Duration>,
    liveness_interval: Option<Duration>,
    batch_size: usize,
}

static POOLS: LazyLock<Mutex<HashMap<String, Pool>>> = LazyLock::new(Default::default);

impl MySqlDatabase {
    pub fn open(o: &RemoteOptions) -> Result<Arc<Self>, ConnectorError> {
        let url = strip_jdbc(&o.url);
        let url = match url.split_once("://") {
            Some(("mariadb" | "mysql", rest)) => format!("mysql://{rest}"),
            _ => url.to_string(),
        };
        // Connector/J URLs carry the user as a parameter (`?user=bowman`), which the driver's
        // URL parser does not take.
        let (url, url_user) = match url::Url::parse(&url) {
            Ok(mut parsed) if parsed.query_pairs().any(|(k, _)| k == "user") => {
                let mut user = None;
                let kept: Vec<(String, String)> = parsed
                    .query_pairs()
                    .filter_map(|(k, v)| if k == "user" { user = Some(v.into_owned()); None } else { Some((k.into_owned(), v.into_owned())) })
                    .collect();
                if kept.is_empty() {
                    parsed.set_query(None);
                } else {
                    parsed.query_pairs_mut().clear().extend_pairs(kept);
                }
                (parsed.to_string(), user)
            }
            _ => (url, None),
        };
        let opts = Opts::from_url(&url).map_err(|e| {
            ConnectorError::new(
                ErrorKind::InvalidOption,
                format!("url '{}' is not a MySQL URL ({e}); write mysql://host:port/database", o.url),
            )
        })?;
        let mut b = OptsBuilder::from_opts(opts)
            .pool_opts(PoolOpts::default().with_constraints(PoolConstraints::new(0, o.pool_size).expect("0 <= size")))
            .prefer_socket(false)
            .init(vec![
                "SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',NO_BACKSLASH_ESCAPES')",
                "SET SESSION time_zone = '+00:00'",
                "SET NAMES utf8mb4",
            ]);
        if let Some(u) = o.user.as_ref().or(url_user.as_ref()) {
            b = b.user(Some(u.clone()));
        }
        if let Some(p) = &o.password {
            b = b.pass(Some(p.clone()));
        }
        b = b.ssl_opts(ssl_opts(&o.tls));
        let opts = Opts::from(b);
        let user = opts.user().unwrap_or("root").to_string();
        let describe = format!("{}:{}/{}", opts.ip_or_hostname(), opts.tcp_port(), opts.db_name().unwrap_or(""));
        let identity = format!("mysql://{user}@{describe}");
        let mut h = DefaultHasher::new();
        (o.password.as_deref(), o.pool_size, &o.tls).hash(&mut h);
        let key = format!("{identity}#{:x}", h.finish());
        Ok(Arc::new(MySqlDatabase {
            opts,
            pool_key: key,
            describe,
            identity,
            secrets: o.secrets(),
            connect_timeout: o.connect_timeout,
            query_timeout: o.query_timeout,
            liveness_interval: o.liveness_interval,
            batch_size: o.batch_size,
        }))
    }

    fn error(&self, e: mysql_async::Error, table: &str, connecting: bool) -> DataFusionError {
        let err = match &e {
            mysql_async::Error::Server(se) => {
                let (kind, code) = match se.code {
                    // ER_ACCESS_DENIED_ERROR: PostgreSQL clients know bad credentials as 28P01.
                    1044 | 1045 | 1698 => (ErrorKind::AccessDenied, "28P01".to_string()),
                    1049 => (ErrorKind::NotFound, "3D000".to_string()),
                    1146 => (ErrorKind::NotFound, "42P01".to_string()),
                    1054 => (ErrorKind::InvalidOption, "42703".to_string()),
                    1064 => (ErrorKind::InvalidOption, "42601".to_string()),
                    1062 => (ErrorKind::Conflict, "23505".to_string()),
                    3024 | 1969 => (ErrorKind::Io, "57014".to_string()),
                    // ER_SECURE_TRANSPORT_REQUIRED: the server refuses connections without TLS.
                    3159 => (ErrorKind::Unreachable, "08004".to_string()),
                    _ => (ErrorKind::Io, se.state.clone()),
                };
                let e = ConnectorError::new(kind, format!("MySQL at {} (table {table}): {} (error {})", self.describe, se.message, se.code));
                if code == "HY000" { e } else { e.with_sqlstate(code) }
            }
            _ if connecting => {
                let hint = match &e {
                    mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer) => {
                        "the server does not offer TLS: set sslMode DISABLED, or enable TLS on the server"
                    }
                    _ => bowman_connector_remote::tls::handshake_hint(&format!("{e:?}"))
                        .unwrap_or("check the url and that the server accepts connections"),
                };
                ConnectorError::new(
                    ErrorKind::Unreachable,
                    format!("cannot connect to MySQL at {} for table {table}: {e}; {hint}", self.describe),
                )
            }
            _ => ConnectorError::new(ErrorKind::ConnectionLost, format!("MySQL at {} (table {table}): {e}", self.describe)),
        };
        let message = redact(&err.message, &self.secrets);
        if connecting {
            // Operators see failed connections in the server log; the message never holds a password.
            tracing::warn!(db = %self.describe, %table, error = %message, "remote database connection failed");
        }
        DataFusionError::External(Box::new(ConnectorError { message, ..err }))
    }

    /// The pool shared by every table naming this database and credentials. A pool lives on
    /// the Tokio runtime that created it; one whose runtime is gone (an embedding application
    /// or test that restarted its runtime) is replaced.
    fn pool(&self, replace_disconnected: bool) -> Pool {
        let mut pools = POOLS.lock().expect("pools");
        if replace_disconnected {
            pools.remove(&self.pool_key);
        }
        pools.entry(self.pool_key.clone()).or_insert_with(|| Pool::new(self.opts.clone())).clone()
    }

    async fn connect(&self, table: &str) -> Result<Conn> {
        let mut got = tokio::time::timeout(self.connect_timeout, self.pool(false).get_conn()).await;
        if let Ok(Err(mysql_async::Error::Driver(mysql_async::DriverError::PoolDisconnected))) = &got {
            got = tokio::time::timeout(self.connect_timeout, self.pool(true).get_conn()).await;
        }
        let mut conn = match got {
            Ok(c) => c.map_err(|e| self.error(e, table, true))?,
            Err(_) => {
                return Err(DataFusionError::External(Box::new(ConnectorError::new(
                    ErrorKind::Unreachable,
                    format!("cannot connect to MySQL at {} for table {table}: no answer within {:?}", self.describe, self.connect_timeout),
                ))));
            }
        };
        if let Some(t) = self.query_timeout {
            // MariaDB (major version 10 and up) and MySQL name the limit differently.
            let set = if conn.server_version().0 >= 10 {
                format!("SET SESSION max_statement_time = {}", t.as_secs_f64())
            } else {
                format!("SET SESSION max_execution_time = {}", t.as_millis())
            };
            conn.query_drop(set).await.map_err(|e| self.error(e, table, false))?;
        }
        Ok(conn)
    }

    /// The columns of a table or query, from the metadata of a query that returns no rows.
    pub async fn discover(&self, source: &RemoteSource, table: &str) -> Result<Schema> {
        let mut conn = self.connect(table).await?;
        let from = match source {
            RemoteSource::Table(t) => quote_reference(self, &self.table_reference(t)),
            RemoteSource::Query(q) => format!("({q}) AS bowman_query"),
        };
        // Prepared, not run: MariaDB materializes a derived table even under LIMIT 0, so running
        // a slow `query` would cost its full time just to learn the column types.
        let stmt = conn.prep(format!("SELECT * FROM {from}")).await.map_err(|e| self.error(e, table, false))?;
        let columns = stmt.columns();
        conn.close(stmt).await.map_err(|e| self.error(e, table, false))?;
        let mut fields = Vec::new();
        for c in columns.iter() {
            let t = arrow_type(c).ok_or_else(|| {
                DataFusionError::External(Box::new(ConnectorError::new(
                    ErrorKind::Unsupported,
                    format!("column {} of {table} has a MySQL type ({:?}) Bowman cannot read yet; cast it in a query option", c.name_str(), c.column_type()),
                )))
            })?;
            fields.push(Field::new(c.name_str(), t, true));
        }
        Ok(Schema::new(fields))
    }
}

/// The driver's TLS settings for a table's `sslMode` (MySQL's default: no TLS).
fn ssl_opts(tls: &TlsOptions) -> Option<SslOpts> {
    let mode = tls.mode_or(TlsMode::Disable);
    if mode == TlsMode::Disable || mode == TlsMode::Prefer {
        // mysql_async cannot fall back to a plain connection, so PREFERRED connects as DISABLED.
        return None;
    }
    // mysql_async builds its rustls configuration with the process's default provider.
    let _ = bowman_connector_remote::tls::provider();
    let mut ssl = SslOpts::default();
    if let Some(ca) = &tls.root_cert {
        ssl = ssl.with_root_certs(vec![PathBuf::from(ca).into()]).with_disable_built_in_roots(true);
    }
    Some(match mode {
        TlsMode::Require => ssl.with_danger_accept_invalid_certs(true).with_danger_skip_domain_validation(true),
        TlsMode::VerifyCa => ssl.with_danger_skip_domain_validation(true),
        _ => ssl,
    })
}

/// The Arrow type of a MySQL result column. Unsigned integers widen (BIGINT UNSIGNED becomes
/// DECIMAL(20,0), as in Spark); TINYINT(1) and BIT(1) are booleans.
pub fn arrow_type(c: &Column) -> Option<DataType> {
    let unsigned = c.flags().contains(ColumnFlags::UNSIGNED_FLAG);
    let binary = c.character_set() == BINARY_CHARSET;
    Some(match c.column_type() {
        ColumnType::MYSQL_TYPE_TINY if c.column_length() == 1 => DataType::Boolean,
        ColumnType::MYSQL_TYPE_TINY => if unsigned { DataType::Int16 } else { DataType::Int8 },
        ColumnType::MYSQL_TYPE_SHORT => if unsigned { DataType::Int32 } else { DataType::Int16 },
        ColumnType::MYSQL_TYPE_INT24 => DataType::Int32,
        ColumnType::MYSQL_TYPE_LONG => if unsigned { DataType::Int64 } else { DataType::Int32 },
        ColumnType::MYSQL_TYPE_LONGLONG => if unsigned { DataType::Decimal128(20, 0) } else { DataType::Int64 },
        ColumnType::MYSQL_TYPE_YEAR => DataType::Int16,
        ColumnType::MYSQL_TYPE_FLOAT => DataType::Float32,
        ColumnType::MYSQL_TYPE_DOUBLE => DataType::Float64,
        ColumnType::MYSQL_TYPE_NEWDECIMAL | ColumnType::MYSQL_TYPE_DECIMAL => {
            let scale = c.decimals();
            let p = c.column_length() as i64 - i64::from(scale > 0) - i64::from(!unsigned);
            DataType::Decimal128(p.clamp(1, 38) as u8, scale.min(38) as i8)
        }
        ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE => DataType::Date32,
        ColumnType::MYSQL_TYPE_DATETIME | ColumnType::MYSQL_TYPE_DATETIME2 => DataType::Timestamp(TimeUnit::Microsecond, None),
        ColumnType::MYSQL_TYPE_TIMESTAMP | ColumnType::MYSQL_TYPE_TIMESTAMP2 => {
            DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
        }
        ColumnType::MYSQL_TYPE_TIME | ColumnType::MYSQL_TYPE_TIME2 => DataType::Time64(TimeUnit::Microsecond),
        ColumnType::MYSQL_TYPE_BIT if c.column_length() == 1 => DataType::Boolean,
        ColumnType::MYSQL_TYPE_BIT => DataType::Int64,
        ColumnType::MYSQL_TYPE_VARCHAR
        | ColumnType::MYSQL_TYPE_VAR_STRING
        | ColumnType::MYSQL_TYPE_STRING
        | ColumnType::MYSQL_TYPE_TINY_BLOB
        | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
        | ColumnType::MYSQL_TYPE_LONG_BLOB
        | ColumnType::MYSQL_TYPE_BLOB => if binary { DataType::Binary } else { DataType::Utf8 },
        ColumnType::MYSQL_TYPE_ENUM | ColumnType::MYSQL_TYPE_SET | ColumnType::MYSQL_TYPE_JSON => DataType::Utf8,
        ColumnType::MYSQL_TYPE_NULL => DataType::Utf8,
        ColumnType::MYSQL_TYPE_GEOMETRY => DataType::Binary,
        _ => return None,
    })
}

/// How a text value is adjusted before Arrow parses it.
#[derive(Clone, Copy)]
enum Prep {
    Plain,
    /// TINYINT(1): any non-zero number is true.
    Bool,
    /// BIT(n): big-endian bytes.
    Bit { boolean: bool },
    /// DATE/DATETIME: MySQL's zero dates ('0000-00-00') read as NULL.
    Date,
}

fn prep_for(c: &Column) -> Prep {
    match c.column_type() {
        ColumnType::MYSQL_TYPE_BIT => Prep::Bit { boolean: c.column_length() == 1 },
        ColumnType::MYSQL_TYPE_TINY if c.column_length() == 1 => Prep::Bool,
        ColumnType::MYSQL_TYPE_DATE
        | ColumnType::MYSQL_TYPE_NEWDATE
        | ColumnType::MYSQL_TYPE_DATETIME
        | ColumnType::MYSQL_TYPE_DATETIME2
        | ColumnType::MYSQL_TYPE_TIMESTAMP
        | ColumnType::MYSQL_TYPE_TIMESTAMP2 => Prep::Date,
        _ => Prep::Plain,
    }
}

fn push_value(b: &mut TextBatchBuilder, i: usize, prep: Prep, v: Option<&Value>) -> Result<()> {
    let bytes: Option<Vec<u8>> = match v {
        None | Some(Value::NULL) => None,
        Some(Value::Bytes(b)) => Some(b.clone()),
        Some(other) => Some(other.as_sql(true).trim_matches('\'').as_bytes().to_vec()),
    };
    let Some(bytes) = bytes else {
        return b.push(i, None);
    };
    match prep {
        Prep::Plain => b.push(i, Some(&bytes)),
        Prep::Bool => b.push(i, Some(if bytes == b"0" { b"0" } else { b"1" })),
        Prep::Bit { boolean } => {
            let n = bytes.iter().fold(0u64, |acc, x| (acc << 8) | *x as u64);
            if boolean {
                b.push(i, Some(if n == 0 { b"0" } else { b"1" }))
            } else {
                b.push(i, Some(n.to_string().as_bytes()))
            }
        }
        Prep::Date if bytes.starts_with(b"0000-00-00") => b.push(i, None),
        Prep::Date => b.push(i, Some(&bytes)),
    }
}

/// Functions whose MySQL meaning matches DataFusion's (MySQL's LENGTH counts bytes, and its
/// CONCAT returns NULL for any NULL argument, so neither is sent).
const MYSQL_FUNCTIONS: &[&str] =
    &["lower", "upper", "abs", "coalesce", "nullif", "character_length", "char_length", "substr", "round", "floor", "ceil"];

#[async_trait]
impl RemoteDatabase for MySqlDatabase {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn identity(&self) -> String {
        self.identity.clone()
    }

    fn dialect(&self) -> Arc<dyn Dialect> {
        Arc::new(MySqlDialect {})
    }

    fn table_reference(&self, dbtable: &str) -> TableReference {
        parse_reference(dbtable, false)
    }

    fn supports_function(&self, name: &str) -> bool {
        MYSQL_FUNCTIONS.contains(&name)
    }

    fn supports_join(&self, join_type: JoinType) -> bool {
        matches!(join_type, JoinType::Inner | JoinType::Left | JoinType::Right)
    }

    fn concat_operator(&self) -> bool {
        false
    }

    fn orders_nulls(&self) -> bool {
        false
    }

    fn exact_string_equality(&self) -> bool {
        false
    }

    async fn ping(&self) -> Result<()> {
        // A new connection outside the pool (whose connections busy statements may hold).
        let run = async {
            let mut conn = Conn::new(self.opts.clone()).await?;
            conn.ping().await?;
            conn.disconnect().await
        };
        let why = match tokio::time::timeout(self.connect_timeout, run).await {
            Ok(Ok(())) => return Ok(()),
            // The server answered, if only with an error (too many connections): it is alive.
            Ok(Err(mysql_async::Error::Server(_))) => return Ok(()),
            Ok(Err(e)) => format!("a new connection failed: {e}"),
            Err(_) => format!("a new connection got no answer within {:?}", self.connect_timeout),
        };
        Err(DataFusionError::External(Box::new(ConnectorError::new(
            ErrorKind::ConnectionLost,
            redact(&format!("MySQL at {} stopped answering: {why}", self.describe), &self.secrets),
        ))))
    }

    fn liveness_interval(&self) -> Option<Duration> {
        self.liveness_interval
    }

    fn query(&self, sql: String, schema: SchemaRef, table: String) -> Result<SendableRecordBatchStream> {
        let me = self.clone();
        let mut builder = RecordBatchReceiverStream::builder(schema.clone(), 2);
        let tx = builder.tx();
        builder.spawn(async move {
            let mut conn = me.connect(&table).await?;
            tracing::debug!(db = %me.describe, %sql, "remote query");
            let mut result = conn.query_iter(sql.as_str()).await.map_err(|e| me.error(e, &table, false))?;
            let columns = result.columns().unwrap_or_else(|| Arc::from(Vec::new()));
            if columns.len() != schema.fields().len() {
                return Err(DataFusionError::Execution(format!(
                    "the remote query for {table} returned {} columns where {} were expected",
                    columns.len(),
                    schema.fields().len()
                )));
            }
            let preps: Vec<Prep> = columns.iter().map(prep_for).collect();
            let mut b = TextBatchBuilder::new(schema.clone());
            while let Some(row) = result.next().await.map_err(|e| me.error(e, &table, false))? {
                for (i, prep) in preps.iter().enumerate() {
                    push_value(&mut b, i, *prep, row.as_ref(i))?;
                }
                b.end_row();
                if b.rows() >= BATCH_ROWS && tx.send(Ok(b.finish()?)).await.is_err() {
                    return Ok(());
                }
            }
            if b.rows() > 0 {
                let _ = tx.send(Ok(b.finish()?)).await;
            }
            Ok(())
        });
        Ok(builder.build())
    }

    async fn insert(&self, target: &TableReference, mut data: SendableRecordBatchStream, table: &str) -> Result<u64> {
        let mut conn = self.connect(table).await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await.map_err(|e| self.error(e, table, false))?;
        let target_sql = quote_reference(self, target);
        let mut total = 0u64;
        while let Some(batch) = data.try_next().await? {
            let rows = InsertRows::new(&batch, TextFlavor::MySql, self.batch_size, |c| quote_ident(self, c))?;
            let row_marks = format!("({})", vec!["?"; rows.texts.len()].join(", "));
            for chunk in rows.chunks {
                let sql = format!(
                    "INSERT INTO {target_sql} ({}) VALUES {}",
                    rows.columns_sql,
                    vec![row_marks.as_str(); chunk.len()].join(", ")
                );
                let mut params = Vec::with_capacity(chunk.len() * rows.texts.len());
                for row in chunk {
                    for col in &rows.texts {
                        params.push(match &col[row] {
                            Some(v) => Value::Bytes(v.clone()),
                            None => Value::NULL,
                        });
                    }
                }
                tx.exec_drop(sql, Params::Positional(params)).await.map_err(|e| self.error(e, table, false))?;
                total += tx.affected_rows();
            }
        }
        tx.commit().await.map_err(|e| self.error(e, table, false))?;
        Ok(total)
    }
}

/// The `mysql` connector.
#[derive(Debug, Default)]
pub struct MySqlConnector;

#[async_trait]
impl TableProviderFactory for MySqlConnector {
    async fn create(&self, _state: &dyn Session, cmd: &CreateExternalTable) -> Result<Arc<dyn TableProvider>> {
        let name = cmd.name.to_string();
        let o = RemoteOptions::parse(&cmd.options, &name)?;
        let db = MySqlDatabase::open(&o)?;
        let discover = db.discover(&o.source, &name);
        open_table(cmd, db.clone(), o.clone(), discover).await
    }
}

#[async_trait]
impl Connector for MySqlConnector {
    fn names(&self) -> &'static [&'static str] {
        &["mysql", "aurora_mysql", "mariadb"]
    }

    fn options(&self) -> &'static [OptionSpec] {
        options::REMOTE_OPTIONS
    }

    fn split_options(&self, options: &BTreeMap<String, String>) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        options::split_options(self.options(), options)
    }

    async fn validate(&self, _state: &dyn Session, cmd: &CreateExternalTable) -> Result<()> {
        let name = cmd.name.to_string();
        let o = RemoteOptions::parse(&cmd.options, &name)?;
        MySqlDatabase::open(&o)?.discover(&o.source, &name).await.map(|_| ())
    }
}
