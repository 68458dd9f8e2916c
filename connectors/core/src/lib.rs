//! The contract between Bowman and its data sources.
//!
//! A connector is a DataFusion [`TableProviderFactory`] plus a little metadata: the `USING` names it
//! answers to and a static schema of its options, with secrets marked. The `sql` crate keeps an
//! open [`ConnectorRegistry`] keyed by those names (no central `match` over formats), calls
//! [`Connector::validate`] and [`TableProviderFactory::create`] at `CREATE TABLE` time, stores
//! the validated options in the catalog, and calls `create` again whenever a statement opens the
//! table.
//!
//! Connectors report failures a user can act on as [`ConnectorError`], whose [`ErrorKind`] the
//! front ends turn into a SQLSTATE or a Flight status.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::CreateExternalTable;

mod replace;
pub use replace::Replace;

/// One option a connector understands.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    pub name: &'static str,
    /// Secret options are stored apart from the others and never displayed or logged.
    pub secret: bool,
    pub description: &'static str,
}

impl OptionSpec {
    pub const fn new(name: &'static str, description: &'static str) -> Self {
        OptionSpec { name, secret: false, description }
    }

    pub const fn secret(name: &'static str, description: &'static str) -> Self {
        OptionSpec { name, secret: true, description }
    }
}

/// A data source Bowman can create tables over.
#[async_trait]
pub trait Connector: TableProviderFactory {
    /// The names `USING` / `STORED AS` accept for this connector, lower case; the first is canonical.
    fn names(&self) -> &'static [&'static str];

    /// Options this connector understands.
    fn options(&self) -> &'static [OptionSpec];

    /// Whether tables of this connector keep their data in files under a `LOCATION`
    /// (and so can be managed tables in the warehouse).
    fn stores_files(&self) -> bool {
        false
    }

    /// Whether the format keeps its own transaction log of live files (Delta). Bowman then
    /// leaves commits to the format instead of tracking the table's files in its catalog.
    fn keeps_own_log(&self) -> bool {
        false
    }

    /// Prepare a new table's storage once at `CREATE TABLE`, after [`Connector::validate`]
    /// and after a managed location was cleared: a Delta connector writes the table's first
    /// log entry here. Opening the table for each query never creates anything.
    async fn initialize(&self, _state: &dyn Session, _cmd: &CreateExternalTable) -> Result<()> {
        Ok(())
    }

    /// Open the table as it was at an earlier version or time (`VERSION AS OF`,
    /// `TIMESTAMP AS OF`), for formats that keep history.
    async fn create_as_of(
        &self,
        _state: &dyn Session,
        cmd: &CreateExternalTable,
        _as_of: &AsOf,
    ) -> Result<Arc<dyn datafusion::catalog::TableProvider>> {
        Err(ConnectorError::new(
            ErrorKind::Unsupported,
            format!(
                "{} tables keep no history, so VERSION AS OF / TIMESTAMP AS OF do not apply to {}; use a delta table",
                cmd.file_type, cmd.name
            ),
        )
        .into())
    }

    /// Split a new table's options into (plain, secret) before they are stored. Connectors whose
    /// plain options can carry a secret (a password inside a URL) override this to move it out.
    fn split_options(&self, options: &BTreeMap<String, String>) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        split_secret_options(self.options(), options)
    }

    /// Check, once at `CREATE TABLE`, that the table can be reached (location exists, credentials
    /// work). Opening the table for each query skips this.
    async fn validate(&self, _state: &dyn Session, _cmd: &CreateExternalTable) -> Result<()> {
        Ok(())
    }

    /// A table this connector opened, as a table that commits its own writes (see
    /// [`OwnLogTable`]); `None` for connectors whose tables do not ([`Connector::keeps_own_log`]
    /// false) or for a provider another connector opened.
    fn own_log_table<'a>(&self, _provider: &'a dyn TableProvider) -> Option<&'a dyn OwnLogTable> {
        None
    }
}

/// A table that keeps its own log of live files (Delta): each write commits itself, replacing
/// what Bowman says it replaces, and the format compacts its own files.
#[async_trait]
pub trait OwnLogTable: Send + Sync {
    /// The same table, whose writes (DataFusion's INSERT into it) replace what `replace` says
    /// in the one commit each write makes.
    fn with_replace(&self, replace: Replace) -> Arc<dyn TableProvider>;

    /// Compact the files of the partitions matching `filters` (column, operator `=` or `in`,
    /// values), clustering by `zorder` columns when given, in one commit: (files added, files
    /// removed).
    async fn optimize(&self, filters: &[(String, String, Vec<String>)], zorder: Vec<String>) -> Result<(u64, u64)>;
}

/// Which earlier state of a table a query reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AsOf {
    /// `VERSION AS OF n`
    Version(i64),
    /// `TIMESTAMP AS OF '...'`: the latest version committed at or before this instant.
    Timestamp(chrono::DateTime<chrono::Utc>),
}

impl AsOf {
    /// The suffix Bowman's SQL layer appends to a table name to ask for this state
    /// (`events@v3`, `events@t2024-01-01T00:00:00Z`), and its inverse.
    pub fn suffix(&self) -> String {
        match self {
            AsOf::Version(v) => format!("@v{v}"),
            AsOf::Timestamp(t) => format!("@t{}", t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        }
    }

    /// Split `name@v3` into (`name`, `AsOf::Version(3)`); plain names give `None`.
    pub fn split_name(name: &str) -> Option<(&str, AsOf)> {
        let (base, tail) = name.rsplit_once('@')?;
        if let Some(v) = tail.strip_prefix('v') {
            return v.parse().ok().map(|v| (base, AsOf::Version(v)));
        }
        let t = tail.strip_prefix('t')?;
        chrono::DateTime::parse_from_rfc3339(t).ok().map(|t| (base, AsOf::Timestamp(t.with_timezone(&chrono::Utc))))
    }
}

/// Whether an option holds a secret: marked so by the connector, or — for options the connector
/// does not declare — named like one. Erring on the side of hiding is deliberate.
pub fn is_secret_option(specs: &[OptionSpec], key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    if let Some(spec) = specs.iter().find(|s| s.name == key) {
        return spec.secret;
    }
    ["secret", "password", "passwd", "token", "credential", "private_key"].iter().any(|w| key.contains(w))
}

/// Split options into (plain, secret) by the connector's schema.
pub fn split_secret_options(
    specs: &[OptionSpec],
    options: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    options.iter().map(|(k, v)| (k.clone(), v.clone())).partition(|(k, _)| !is_secret_option(specs, k))
}

/// Replace `${env:NAME}` references in an option value with the server's environment variable
/// `NAME`, so secrets can stay out of SQL text and the catalog entirely: the reference is what
/// gets stored, and it is resolved each time the table is opened.
pub fn resolve_env_refs(option: &str, value: &str) -> std::result::Result<String, ConnectorError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${env:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 6..];
        let end = after.find('}').ok_or_else(|| {
            ConnectorError::new(ErrorKind::InvalidOption, format!("option '{option}' has an unterminated ${{env:...}} reference"))
        })?;
        let name = &after[..end];
        let resolved = std::env::var(name).map_err(|_| {
            ConnectorError::new(
                ErrorKind::InvalidOption,
                format!("option '{option}' refers to the environment variable {name}, which the Bowman server does not have; set it where the server starts"),
            )
        })?;
        out.push_str(&resolved);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The open map of connectors, keyed by every name each one answers to.
#[derive(Debug, Default, Clone)]
pub struct ConnectorRegistry {
    by_name: HashMap<String, Arc<dyn Connector>>,
}

impl ConnectorRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, connector: Arc<dyn Connector>) {
        for name in connector.names() {
            self.by_name.insert(name.to_string(), connector.clone());
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Connector>> {
        self.by_name.get(&name.to_ascii_lowercase()).cloned()
    }

    /// Every `USING` name, sorted, for error messages.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.by_name.values().flat_map(|c| c.names().iter().copied()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// The category of a connector failure; each maps to one SQLSTATE class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// An established connection to a remote service broke (08006).
    ConnectionLost,
    /// An option is missing, unknown or malformed (SQLSTATE 22023).
    InvalidOption,
    /// The location or remote object does not exist (58P01 for files).
    NotFound,
    /// The remote service could not be reached (08001).
    Unreachable,
    /// Credentials were refused (28000).
    AccessDenied,
    /// Stored data could not be decoded (XX001).
    Corrupt,
    /// Other I/O failure (58030).
    Io,
    /// A feature the connector does not support (0A000).
    Unsupported,
    /// Another writer committed first; retrying the statement may succeed (40001).
    Conflict,
}

/// A failure a user can act on, raised by any connector.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConnectorError {
    pub kind: ErrorKind,
    pub message: String,
    /// The SQLSTATE a remote database reported, passed through to the client unchanged.
    pub sqlstate: Option<String>,
}

impl ConnectorError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ConnectorError { kind, message: message.into(), sqlstate: None }
    }

    /// Report the remote database's own SQLSTATE instead of the one `kind` maps to.
    pub fn with_sqlstate(mut self, code: impl Into<String>) -> Self {
        let code = code.into();
        if code.len() == 5 && code.chars().all(|c| c.is_ascii_alphanumeric()) {
            self.sqlstate = Some(code);
        }
        self
    }
}

impl From<ConnectorError> for DataFusionError {
    fn from(e: ConnectorError) -> Self {
        DataFusionError::External(Box::new(e))
    }
}
