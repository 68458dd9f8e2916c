//! What Bowman's SQL-database connectors (PostgreSQL, MySQL, Redshift) share.
//!
//! A connector implements [`RemoteDatabase`] (connect, run one SQL statement as a stream of Arrow
//! batches, insert batches in one transaction) and opens tables as [`RemoteTable`]s. Everything
//! about *what* SQL reaches the remote database lives here, once:
//!
//! - [`RemoteTable::scan`] sends projections, filters and LIMIT, and splits large reads into
//!   `numPartitions` range queries over `partitionColumn` (Spark's JDBC options);
//! - [`pushdown::RemotePushdown`], an optimizer rule, sends whole joins, aggregates and sorts
//!   when every table under them lives in the same remote database.
//!
//! SQL is produced by DataFusion's unparser in the remote's dialect, so every identifier is quoted
//! and every literal escaped by one well-tested printer; no statement text is pasted together
//! from user values.

pub mod exec;
pub mod jdbc;
pub mod options;
pub mod pushdown;
pub mod table;
pub mod text;
pub mod tls;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::error::Result;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::JoinType;
use datafusion::sql::unparser::dialect::Dialect;

pub use exec::RemoteScanExec;
pub use jdbc::JdbcConnector;
pub use options::{PartitionSpec, RemoteOptions, RemoteSource, REMOTE_OPTIONS};
pub use pushdown::{RemotePlanner, RemotePushdown};
pub use table::RemoteTable;

/// One remote database, reached through a pool of connections.
#[async_trait]
pub trait RemoteDatabase: Send + Sync + Debug {
    /// `postgres`, `mysql`, `redshift`.
    fn kind(&self) -> &'static str;

    /// `host:port/database` (never a password), for EXPLAIN and error messages.
    fn describe(&self) -> String;

    /// Two tables whose databases have the same identity can be joined remotely: same server,
    /// database and credentials.
    fn identity(&self) -> String;

    /// How the remote spells SQL; used to print pushed-down plans.
    fn dialect(&self) -> Arc<dyn Dialect>;

    /// Turn a user's `dbtable` (`schema.table`, quoted parts kept as written) into a reference
    /// with the remote's identifier rules applied (PostgreSQL folds unquoted names to lower case).
    fn table_reference(&self, dbtable: &str) -> TableReference;

    /// Whether a scalar function of this name means the same thing remotely.
    fn supports_function(&self, name: &str) -> bool;

    /// Whether a join of this type can be sent as SQL.
    fn supports_join(&self, join_type: JoinType) -> bool {
        matches!(join_type, JoinType::Inner | JoinType::Left | JoinType::Right)
    }

    /// Whether a string literal with this value can be sent as the unparser prints it.
    fn string_literal_pushable(&self, _value: &str) -> bool {
        true
    }

    /// Whether string equality is exact (byte-for-byte) as in Bowman. MySQL's default
    /// collations compare case- and accent-insensitively, so there string equality, IN and LIKE
    /// are sent only as a pre-filter that Bowman checks again, and strings never decide a
    /// pushed join, grouping or sort.
    fn exact_string_equality(&self) -> bool {
        true
    }

    /// Whether ORDER BY takes NULLS FIRST / NULLS LAST. Where it does not (MySQL: NULLs sort
    /// first ascending), pushed sorts get an `x IS NULL` key in front instead.
    fn orders_nulls(&self) -> bool {
        true
    }

    /// Whether `a || b` means string concatenation (not OR, as in MySQL).
    fn concat_operator(&self) -> bool {
        true
    }

    /// Run one query and stream its rows, decoded into `schema` (by position).
    fn query(&self, sql: String, schema: SchemaRef, table: String) -> Result<SendableRecordBatchStream>;

    /// Whether the database still answers: a new connection (not a pooled one, which a busy
    /// statement may hold) that runs a trivial statement, within the connect timeout. Asked
    /// when a statement has waited [`RemoteOptions::liveness_interval`] for its next rows; a
    /// failure ends the statement with 08006 instead of waiting on a frozen server for ever.
    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    /// See [`RemoteOptions::liveness_interval`]; `None`: never check.
    fn liveness_interval(&self) -> Option<std::time::Duration> {
        None
    }

    /// Insert every batch of `data` into `table` (columns by name) in one remote transaction.
    async fn insert(&self, table: &TableReference, data: SendableRecordBatchStream, display: &str) -> Result<u64>;
}

/// Remove every occurrence of each secret from a message (a driver may echo a URL or option back).
pub fn redact(message: &str, secrets: &[String]) -> String {
    let mut out = message.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        out = out.replace(s.as_str(), "********");
    }
    out
}
