//! `USING cassandra` (alias `org.apache.spark.sql.cassandra`): Cassandra and ScyllaDB tables over
//! the scylla driver. Schema from the driver's `system_schema` metadata; scans split by the token
//! ranges of the driver's live ring (or direct partition reads when the partition key is fixed by
//! `=`/`IN`), run with bounded concurrency and decoded page by page straight into Arrow builders;
//! INSERT through prepared statements in unlogged batches grouped by partition key.

mod exec;
mod options;
mod pushdown;
pub mod types;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bowman_connector::{Connector, ConnectorError, ErrorKind, OptionSpec};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::common::ScalarValue;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{CreateExternalTable, Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::StreamExt;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session as CqlSession;
use scylla::client::session_builder::SessionBuilder;
use scylla::cluster::metadata::{ColumnType, Table};
use scylla::errors::ExecutionError;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::batch::{Batch, BatchType};
use scylla::value::{CqlValue, MaybeUnset};

pub use options::CassandraOptions;
use options::quote_ident;

/// How long connecting to a cluster may take before the statement fails with 08001.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(8);

const OPTIONS: &[OptionSpec] = &[
    OptionSpec::new("keyspace", "Cassandra keyspace of the table (required)"),
    OptionSpec::new("table", "Cassandra table name (required)"),
    OptionSpec::new("contact_points", "comma-separated host[:port] list (default port 9042); server default [cassandra] contact_points"),
    OptionSpec::new("local_dc", "datacenter whose nodes serve the requests"),
    OptionSpec::new("username", "user for PasswordAuthenticator"),
    OptionSpec::secret("password", "password for PasswordAuthenticator"),
    OptionSpec::new("consistency", "read and write consistency level (default LOCAL_ONE)"),
    OptionSpec::new("page_size", "rows per page of a scan (default 5000)"),
    OptionSpec::new("concurrency", "scan units / write batches in flight at once (default 8)"),
    OptionSpec::new("batch_size", "rows per unlogged batch of one partition (default 50)"),
    OptionSpec::new("write_nulls", "'true' writes NULLs as tombstones; default 'false' leaves them unset"),
    OptionSpec::new("in_limit", "most partition reads an IN list may expand to (default 1000); above it a token-range scan runs"),
    OptionSpec::new("request_timeout_ms", "timeout of one request (page, batch), default 10000"),
];

/// The Cassandra connector.
#[derive(Debug, Default)]
pub struct CassandraConnector {
    /// Server-level connection options (`[cassandra]` in bowman.toml, `BOWMAN_CASSANDRA_*`), below
    /// each table's OPTIONS, as Spark's `spark.cassandra.connection.host`.
    pub defaults: std::collections::BTreeMap<String, String>,
}

impl CassandraConnector {
    pub fn new(defaults: std::collections::BTreeMap<String, String>) -> Self {
        CassandraConnector { defaults }
    }

    fn options_for(&self, cmd: &CreateExternalTable) -> Result<CassandraOptions, ConnectorError> {
        let mut merged: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &self.defaults {
            let k = k.to_ascii_lowercase();
            // a stray server-level key must not break every table: only table OPTIONS are strict
            if options::KNOWN.contains(&k.as_str()) {
                merged.insert(k, v.clone());
            } else {
                tracing::warn!(option = %k, "ignoring unknown [cassandra] server option");
            }
        }
        for (k, v) in &cmd.options {
            merged.insert(k.to_ascii_lowercase(), bowman_connector::resolve_env_refs(k, v)?);
        }
        CassandraOptions::parse(&merged, &cmd.name.to_string())
    }
}

/// The runtime the driver's background tasks run on, for the life of the process.
fn driver_runtime() -> &'static tokio::runtime::Handle {
    static RT: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    RT.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bowman-cassandra")
            .enable_all()
            .build()
            .expect("the Cassandra driver threads start");
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("bowman-cassandra-rt".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .expect("the Cassandra driver thread starts");
        handle
    })
}

fn sessions() -> &'static Mutex<HashMap<String, Arc<CqlSession>>> {
    static S: OnceLock<Mutex<HashMap<String, Arc<CqlSession>>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

/// One driver session per cluster and credentials, shared by every table and statement.
pub async fn session_for(o: &CassandraOptions) -> Result<Arc<CqlSession>, ConnectorError> {
    let key = o.session_key();
    if let Some(s) = sessions().lock().unwrap().get(&key) {
        return Ok(s.clone());
    }
    let mut profile = ExecutionProfile::builder()
        .consistency(o.consistency)
        .request_timeout(Some(Duration::from_millis(o.request_timeout_ms)));
    if let Some(dc) = &o.local_dc {
        profile = profile.load_balancing_policy(DefaultPolicy::builder().prefer_datacenter(dc.clone()).permit_dc_failover(false).build());
    }
    let mut b = SessionBuilder::new()
        .known_nodes(&o.contact_points)
        .connection_timeout(Duration::from_secs(5))
        .default_execution_profile_handle(profile.build().into_handle());
    if let Some(u) = &o.username {
        b = b.user(u.clone(), o.password.clone().unwrap_or_default());
    }
    let points = o.contact_points.join(",");
    // the driver's connection and metadata tasks live on the connector's own runtime: a session
    // outlives the statement (and the server runtime) that opened it
    let built = driver_runtime()
        .spawn(async move { tokio::time::timeout(CONNECT_TIMEOUT, b.build()).await })
        .await
        .map_err(|e| ConnectorError::new(ErrorKind::Unreachable, format!("cannot connect to Cassandra at {points}: {e}")))?;
    let session = match built {
        Ok(Ok(s)) => Arc::new(s),
        Ok(Err(e)) => {
            let msg = e.to_string();
            let kind = if msg.to_ascii_lowercase().contains("authenticat") { ErrorKind::AccessDenied } else { ErrorKind::Unreachable };
            return Err(ConnectorError::new(kind, format!("cannot connect to Cassandra at {points}: {}", o.redact(&msg))));
        }
        Err(_) => {
            return Err(ConnectorError::new(
                ErrorKind::Unreachable,
                format!("cannot connect to Cassandra at {points}: no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            ));
        }
    };
    sessions().lock().unwrap().insert(key, session.clone());
    Ok(session)
}

/// A driver error as a Bowman error: failures to reach a node are 08001, the rest carry the
/// server's message.
pub(crate) fn exec_error(e: ExecutionError, o: &CassandraOptions, what: &str) -> DataFusionError {
    let msg = o.redact(&e.to_string());
    // failures to reach a node, however deep in the driver's error they sit
    let shape = format!("{e:?}");
    let unreachable = matches!(
        e,
        ExecutionError::EmptyPlan | ExecutionError::ConnectionPoolError(_) | ExecutionError::RequestTimeout(_)
    ) || ["ConnectionPoolError", "BrokenConnection", "ConnectionBroken", "EmptyPlan", "UnableToAllocStreamId", "Unavailable", "IoError", "TimeoutError"]
        .iter()
        .any(|k| shape.contains(k));
    if unreachable {
        ConnectorError::new(ErrorKind::Unreachable, format!("{what}: Cassandra at {} is unreachable: {msg}", o.contact_points.join(","))).into()
    } else {
        DataFusionError::Execution(format!("{what}: {msg}"))
    }
}

/// A Cassandra table as Bowman sees it.
pub struct CassandraTable {
    name: String,
    opts: CassandraOptions,
    session: Arc<CqlSession>,
    schema: SchemaRef,
    /// every column in schema order with its CQL type
    columns: Vec<(String, ColumnType<'static>)>,
    partition_key: Vec<String>,
    clustering_key: Vec<String>,
}

impl fmt::Debug for CassandraTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CassandraTable({}.{})", self.opts.keyspace, self.opts.table)
    }
}

fn find_table<'a>(state: &'a scylla::cluster::ClusterState, o: &CassandraOptions) -> Option<&'a Table> {
    let ks = state.get_keyspace(&o.keyspace).or_else(|| state.get_keyspace(o.keyspace.to_ascii_lowercase()))?;
    // a table read while it was being created can show without its columns: not there yet
    ks.tables.get(&o.table).or_else(|| ks.tables.get(&o.table.to_ascii_lowercase())).filter(|t| !t.partition_key.is_empty())
}

impl CassandraTable {
    pub async fn open(name: String, opts: CassandraOptions) -> Result<CassandraTable, ConnectorError> {
        let session = session_for(&opts).await?;
        let mut state = session.get_cluster_state();
        if find_table(&state, &opts).is_none() {
            // a table created after the session connected: fetch the schema again
            if let Err(e) = tokio::time::timeout(CONNECT_TIMEOUT, session.refresh_metadata()).await.unwrap_or(Ok(())) {
                return Err(ConnectorError::new(ErrorKind::Unreachable, format!("{name}: cannot read the schema from Cassandra: {e}")));
            }
            state = session.get_cluster_state();
        }
        let Some(table) = find_table(&state, &opts) else {
            return Err(ConnectorError::new(
                ErrorKind::NotFound,
                format!("{name}: Cassandra has no table {}.{}", quote_ident(&opts.keyspace), quote_ident(&opts.table)),
            ));
        };
        // key columns first, in key order, then the rest by name (as cqlsh shows `SELECT *`)
        let mut names: Vec<String> = table.partition_key.clone();
        names.extend(table.clustering_key.iter().cloned());
        let mut rest: Vec<&String> = table.columns.keys().filter(|c| !names.contains(c)).collect();
        rest.sort();
        names.extend(rest.into_iter().cloned());
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        for n in names {
            let c = &table.columns[&n];
            let dt = types::arrow_type(&c.typ)
                .map_err(|e| ConnectorError::new(ErrorKind::Unsupported, format!("{name}: column {n}: {e}")))?;
            let key = table.partition_key.contains(&n) || table.clustering_key.contains(&n);
            fields.push(Field::new(n.clone(), dt, !key));
            columns.push((n, c.typ.clone()));
        }
        Ok(CassandraTable {
            name,
            schema: Arc::new(Schema::new(fields)),
            columns,
            partition_key: table.partition_key.clone(),
            clustering_key: table.clustering_key.clone(),
            opts,
            session,
        })
    }

    fn column_type(&self, name: &str) -> Option<&ColumnType<'static>> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.opts.keyspace), quote_ident(&self.opts.table))
    }
}

#[async_trait]
impl TableProvider for CassandraTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        let plan = pushdown::plan(self, filters);
        Ok((0..filters.len())
            .map(|i| if plan.pushed.contains(&i) { TableProviderFilterPushDown::Exact } else { TableProviderFilterPushDown::Unsupported })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let refs: Vec<&Expr> = filters.iter().collect();
        let plan = pushdown::plan(self, &refs);
        let indices: Vec<usize> = projection.cloned().unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        let out_schema = Arc::new(self.schema.project(&indices)?);
        // Cassandra needs at least one column selected: a projection of nothing (count(*)) reads
        // the first partition-key column and returns only row counts.
        let read: Vec<usize> = if indices.is_empty() { vec![0] } else { indices.clone() };
        let cols: Vec<(String, ColumnType<'static>)> = read.iter().map(|&i| self.columns[i].clone()).collect();
        let read_schema = Arc::new(self.schema.project(&read)?);
        // any filter left to DataFusion means the CQL LIMIT would cut rows it still has to see
        let limit = if plan.pushed.len() == filters.len() { limit } else { None };
        let exec = exec::CassandraScanExec::new(self, plan, cols, read_schema, out_schema, limit)?;
        Ok(Arc::new(exec))
    }

    async fn insert_into(&self, _state: &dyn Session, input: Arc<dyn ExecutionPlan>, op: InsertOp) -> Result<Arc<dyn ExecutionPlan>> {
        if op != InsertOp::Append {
            return Err(ConnectorError::new(
                ErrorKind::Unsupported,
                format!("{}: Cassandra tables take INSERT INTO only (an INSERT is an upsert by primary key); {op} is not supported", self.name),
            )
            .into());
        }
        let sink = CassandraSink {
            name: self.name.clone(),
            opts: self.opts.clone(),
            session: self.session.clone(),
            schema: self.schema.clone(),
            columns: self.columns.clone(),
            partition_key: self.partition_key.clone(),
            primary_key: self.partition_key.iter().chain(self.clustering_key.iter()).cloned().collect(),
            qualified: self.qualified(),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// Writes an INSERT's rows: one prepared INSERT, unlogged batches of rows of one partition,
/// `concurrency` batches in flight.
struct CassandraSink {
    name: String,
    opts: CassandraOptions,
    session: Arc<CqlSession>,
    schema: SchemaRef,
    columns: Vec<(String, ColumnType<'static>)>,
    partition_key: Vec<String>,
    primary_key: Vec<String>,
    qualified: String,
}

impl fmt::Debug for CassandraSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CassandraSink({})", self.qualified)
    }
}

impl DisplayAs for CassandraSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "CassandraSink: {} consistency={:?} batch_size={} concurrency={} write_nulls={}",
            self.qualified, self.opts.consistency, self.opts.batch_size, self.opts.concurrency, self.opts.write_nulls
        )
    }
}

type RowValues = Vec<MaybeUnset<Option<CqlValue>>>;

#[async_trait]
impl DataSink for CassandraSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(&self, mut data: SendableRecordBatchStream, _context: &Arc<TaskContext>) -> Result<u64> {
        let input_schema = data.schema();
        // the input columns by position are the table's columns (DataFusion aligned them)
        let names: Vec<String> = self.columns.iter().map(|(n, _)| quote_ident(n)).collect();
        let cql = format!("INSERT INTO {} ({}) VALUES ({})", self.qualified, names.join(", "), vec!["?"; names.len()].join(", "));
        let mut prepared = self.session.prepare(cql).await.map_err(|e| {
            exec_error(ExecutionError::PrepareError(e), &self.opts, &self.name)
        })?;
        prepared.set_consistency(self.opts.consistency);
        let pk_pos: Vec<usize> = self.partition_key.iter().map(|p| self.columns.iter().position(|(n, _)| n == p).unwrap()).collect();
        let key_pos: Vec<usize> = self.primary_key.iter().map(|p| self.columns.iter().position(|(n, _)| n == p).unwrap()).collect();
        let mut total = 0u64;
        while let Some(batch) = data.next().await {
            let batch = batch?;
            if batch.num_columns() != self.columns.len() {
                return Err(DataFusionError::Plan(format!(
                    "{}: INSERT gives {} columns, the table has {}",
                    self.name,
                    input_schema.fields().len(),
                    self.columns.len()
                )));
            }
            // rows grouped by partition key, in arrival order
            let mut groups: Vec<(String, Vec<RowValues>)> = Vec::new();
            let mut index: HashMap<String, usize> = HashMap::new();
            for row in 0..batch.num_rows() {
                let mut values: RowValues = Vec::with_capacity(self.columns.len());
                for (i, (name, t)) in self.columns.iter().enumerate() {
                    let s = ScalarValue::try_from_array(batch.column(i).as_ref(), row)?;
                    let v = types::to_cql(&s, t, name)?;
                    if v.is_none() && key_pos.contains(&i) {
                        return Err(ConnectorError::new(
                            ErrorKind::InvalidOption,
                            format!("{}: primary key column {name} cannot be NULL", self.name),
                        )
                        .into());
                    }
                    values.push(match v {
                        None if !self.opts.write_nulls => MaybeUnset::Unset,
                        v => MaybeUnset::Set(v),
                    });
                }
                let key = format!("{:?}", pk_pos.iter().map(|&p| &values[p]).collect::<Vec<_>>());
                let at = *index.entry(key.clone()).or_insert_with(|| {
                    groups.push((key, Vec::new()));
                    groups.len() - 1
                });
                groups[at].1.push(values);
            }
            let mut units: Vec<Vec<RowValues>> = Vec::new();
            for (_, rows) in groups {
                let mut rows = rows.into_iter().peekable();
                while rows.peek().is_some() {
                    units.push(rows.by_ref().take(self.opts.batch_size).collect());
                }
            }
            let n = batch.num_rows() as u64;
            let session = &self.session;
            let prepared = &prepared;
            let opts = &self.opts;
            let name = &self.name;
            let mut writes = futures::stream::iter(units.into_iter().map(|rows| async move {
                if rows.len() == 1 {
                    session.execute_unpaged(prepared, &rows[0]).await.map(|_| ())
                } else {
                    let mut b = Batch::new(BatchType::Unlogged);
                    for _ in 0..rows.len() {
                        b.append_statement(prepared.clone());
                    }
                    b.set_consistency(opts.consistency);
                    session.batch(&b, rows).await.map(|_| ())
                }
            }))
            .buffer_unordered(self.opts.concurrency);
            while let Some(r) = writes.next().await {
                r.map_err(|e| exec_error(e, opts, name))?;
            }
            total += n;
        }
        Ok(total)
    }
}

#[async_trait]
impl TableProviderFactory for CassandraConnector {
    async fn create(&self, _state: &dyn Session, cmd: &CreateExternalTable) -> Result<Arc<dyn TableProvider>> {
        let opts = self.options_for(cmd)?;
        Ok(Arc::new(CassandraTable::open(cmd.name.to_string(), opts).await?))
    }
}

#[async_trait]
impl Connector for CassandraConnector {
    fn names(&self) -> &'static [&'static str] {
        &["cassandra", "org.apache.spark.sql.cassandra"]
    }

    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }

    async fn validate(&self, _state: &dyn Session, cmd: &CreateExternalTable) -> Result<()> {
        self.options_for(cmd)?;
        Ok(())
    }
}
