//! Delta Lake tables (`USING delta`), on local disk and S3, through the `deltalake` crate.
//!
//! The Delta log is the table's source of truth: Bowman does not track a Delta table's files in
//! its own catalog ([`Connector::keeps_own_log`]). Every write Bowman makes is one Delta commit
//! (one new table version): appends add files; overwrites add the new files and remove the
//! replaced ones in the same commit, so readers of the log see the old or the new partition,
//! never both. Commits are put-if-absent writes of the next log entry (`PutMode::Create`),
//! which S3 and SeaweedFS implement with conditional requests: nothing is renamed or copied.
//!
//! Reads go through deltalake's DataFusion table provider; `VERSION AS OF` and
//! `TIMESTAMP AS OF` load an older snapshot ([`Connector::create_as_of`]).

mod sink;

use std::collections::BTreeMap;
use std::sync::{Arc, Once};

use async_trait::async_trait;
use bowman_connector::{AsOf, Connector, ConnectorError, ErrorKind, OptionSpec};
use bowman_connector_files::FilesTableProviderFactory;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{CreateExternalTable, Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};

pub use bowman_connector::Replace;

/// Options of a Delta table besides the S3 settings it shares with file tables.
const DELTA_OPTIONS: &[OptionSpec] = &[OptionSpec::new(
    "target_file_size",
    "bytes per data file written (default: the table's delta.targetFileSize, 100 MiB)",
)];

/// The connector behind `USING delta`.
#[derive(Debug)]
pub struct DeltaConnector {
    files: Arc<FilesTableProviderFactory>,
}

impl DeltaConnector {
    /// `files` sets up object stores, so a Delta table reaches S3 exactly as a Parquet table
    /// with the same options does (and through the same counted clients).
    pub fn new(files: Arc<FilesTableProviderFactory>) -> Self {
        static S3: Once = Once::new();
        // deltalake looks up log stores by URL scheme; s3:// needs its AWS handlers.
        S3.call_once(|| deltalake::aws::register_handlers(None));
        DeltaConnector { files }
    }

    fn options(cmd: &CreateExternalTable) -> BTreeMap<String, String> {
        cmd.options.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect()
    }

    /// A table handle over Bowman's object store for the location; `as_of` picks the snapshot
    /// (latest by default). The log is not loaded.
    /// The table's location, with a client for its store registered in the session.
    fn location(&self, state: &dyn Session, cmd: &CreateExternalTable) -> Result<(String, ListingTableUrl)> {
        let location = cmd
            .locations
            .first()
            .ok_or_else(|| ConnectorError::new(ErrorKind::InvalidOption, "a delta table needs a LOCATION"))?;
        let url = self.files.prepare_location(state, location, &Self::options(cmd))?;
        Ok((location.clone(), url))
    }

    fn builder(&self, state: &dyn Session, cmd: &CreateExternalTable) -> Result<DeltaTableBuilder> {
        let (location, url) = self.location(state, cmd)?;
        let store = state.runtime_env().object_store(&url)?;
        let table_url = url::Url::parse(url.as_str())
            .map_err(|e| ConnectorError::new(ErrorKind::InvalidOption, format!("invalid LOCATION {location}: {e}")))?;
        Ok(DeltaTableBuilder::from_url(table_url.clone())
            .map_err(|e| delta_error(&cmd.name.to_string(), e))?
            .with_storage_backend(store, table_url))
    }

    async fn load(&self, state: &dyn Session, cmd: &CreateExternalTable, as_of: Option<&AsOf>) -> Result<DeltaTable> {
        let mut builder = self.builder(state, cmd)?;
        match as_of {
            Some(AsOf::Version(v)) => builder = builder.with_version(u64::try_from(*v).unwrap_or_default()),
            Some(AsOf::Timestamp(t)) => builder = builder.with_timestamp(*t),
            None => {}
        }
        builder.load().await.map_err(|e| delta_error(&cmd.name.to_string(), e))
    }

    async fn provider(&self, state: &dyn Session, cmd: &CreateExternalTable, as_of: Option<&AsOf>) -> Result<Arc<dyn TableProvider>> {
        let table = self.load(state, cmd, as_of).await?;
        let target_file_size = match Self::options(cmd).get("target_file_size") {
            Some(v) => Some(v.parse::<u64>().ok().and_then(std::num::NonZeroU64::new).ok_or_else(|| {
                ConnectorError::new(ErrorKind::InvalidOption, format!("target_file_size must be a positive number of bytes, not '{v}'"))
            })?),
            None => None,
        };
        Ok(Arc::new(DeltaProvider::try_new(cmd.name.to_string(), table, as_of.is_some(), target_file_size).await?))
    }
}

/// A deltalake failure as a [`ConnectorError`] a user can act on.
pub fn delta_error(table: &str, e: DeltaTableError) -> DataFusionError {
    let kind = match &e {
        DeltaTableError::NotATable(_) => ErrorKind::NotFound,
        DeltaTableError::InvalidVersion(_) | DeltaTableError::InvalidDateTimeString { .. } => ErrorKind::InvalidOption,
        DeltaTableError::Transaction { .. } | DeltaTableError::VersionAlreadyExists(_) => {
            return ConnectorError::new(
                ErrorKind::Conflict,
                format!("another writer committed to delta table {table} first: {e}; retry the statement"),
            )
            .into();
        }
        _ => ErrorKind::Io,
    };
    ConnectorError::new(kind, format!("delta table {table}: {e}")).into()
}

#[async_trait]
impl TableProviderFactory for DeltaConnector {
    async fn create(&self, state: &dyn Session, cmd: &CreateExternalTable) -> Result<Arc<dyn TableProvider>> {
        self.provider(state, cmd, None).await
    }
}

#[async_trait]
impl Connector for DeltaConnector {
    fn names(&self) -> &'static [&'static str] {
        &["delta"]
    }

    fn options(&self) -> &'static [OptionSpec] {
        static ALL: std::sync::LazyLock<&'static [OptionSpec]> =
            std::sync::LazyLock::new(|| bowman_connector_files::with_s3_options(DELTA_OPTIONS));
        *ALL
    }

    fn stores_files(&self) -> bool {
        true
    }

    fn keeps_own_log(&self) -> bool {
        true
    }

    async fn validate(&self, state: &dyn Session, cmd: &CreateExternalTable) -> Result<()> {
        let (_, url) = self.location(state, cmd)?;
        self.files.check_location(state, &url).await
    }

    fn own_log_table<'a>(&self, provider: &'a dyn TableProvider) -> Option<&'a dyn bowman_connector::OwnLogTable> {
        let any: &dyn std::any::Any = provider;
        any.downcast_ref::<DeltaProvider>().map(|d| d as &dyn bowman_connector::OwnLogTable)
    }

    /// Adopt the Delta table at the location if there is one (its columns must match any that
    /// CREATE TABLE lists), else write version 0 with the declared columns and partitioning.
    async fn initialize(&self, state: &dyn Session, cmd: &CreateExternalTable) -> Result<()> {
        let name = cmd.name.to_string();
        let mut table = self.builder(state, cmd)?.build().map_err(|e| delta_error(&name, e))?;
        match table.load().await {
            Ok(()) => {
                let existing = table.snapshot().map_err(|e| delta_error(&name, e))?.snapshot().arrow_schema();
                let declared = cmd.schema.as_arrow();
                if !declared.fields().is_empty() {
                    let names = |s: &Schema| s.fields().iter().map(|f| f.name().to_ascii_lowercase()).collect::<Vec<_>>();
                    let found = names(existing.as_ref());
                    if names(declared) != found {
                        return Err(ConnectorError::new(
                            ErrorKind::InvalidOption,
                            format!(
                                "LOCATION already holds a delta table with columns ({}); declare the same columns or none",
                                found.join(", ")
                            ),
                        )
                        .into());
                    }
                }
                Ok(())
            }
            Err(DeltaTableError::NotATable(_)) => {
                let declared = cmd.schema.as_arrow();
                if declared.fields().is_empty() {
                    return Err(ConnectorError::new(
                        ErrorKind::NotFound,
                        format!("no delta table at {}; list the columns to create one", cmd.locations.join(", ")),
                    )
                    .into());
                }
                let struct_type: deltalake::kernel::StructType = declared
                    .try_into_kernel()
                    .map_err(|e| ConnectorError::new(ErrorKind::Unsupported, format!("delta table {name}: {e}")))?;
                table
                    .create()
                    .with_table_name(cmd.name.table())
                    .with_columns(struct_type.fields().cloned())
                    .with_partition_columns(cmd.table_partition_cols.clone())
                    .await
                    .map_err(|e| delta_error(&name, e))?;
                Ok(())
            }
            Err(e) => Err(delta_error(&name, e)),
        }
    }

    async fn create_as_of(&self, state: &dyn Session, cmd: &CreateExternalTable, as_of: &AsOf) -> Result<Arc<dyn TableProvider>> {
        self.provider(state, cmd, Some(as_of)).await
    }
}

/// A Delta table as DataFusion sees it: scans through deltalake's provider, writes through
/// Bowman's sink (one commit per statement, replacing what [`Replace`] says).
#[derive(Debug)]
pub struct DeltaProvider {
    name: String,
    table: DeltaTable,
    scan: Arc<dyn TableProvider>,
    schema: SchemaRef,
    /// An older snapshot: readable, never written.
    historical: bool,
    replace: Replace,
    target_file_size: Option<std::num::NonZeroU64>,
}

impl DeltaProvider {
    async fn try_new(
        name: String,
        table: DeltaTable,
        historical: bool,
        target_file_size: Option<std::num::NonZeroU64>,
    ) -> Result<Self> {
        let scan = table.table_provider().await?;
        // deltalake reads partition values dictionary-encoded and may read strings as views;
        // Bowman's catalog and clients speak plain Arrow types, so scans are cast back.
        let schema = Arc::new(Schema::new(
            scan.schema().fields().iter().map(|f| Field::new(f.name(), plain_type(f.data_type()), true)).collect::<Vec<_>>(),
        ));
        Ok(DeltaProvider { name, table, scan, schema, historical, replace: Replace::Nothing, target_file_size })
    }

    /// The same table, whose next write replaces what `replace` says.
    fn replacing(&self, replace: Replace) -> Arc<dyn TableProvider> {
        Arc::new(DeltaProvider {
            name: self.name.clone(),
            table: self.table.clone(),
            scan: self.scan.clone(),
            schema: self.schema.clone(),
            historical: self.historical,
            replace,
            target_file_size: self.target_file_size,
        })
    }

    pub fn table(&self) -> &DeltaTable {
        &self.table
    }

    pub fn partition_columns(&self) -> Result<Vec<String>> {
        Ok(self
            .table
            .snapshot()
            .map_err(|e| delta_error(&self.name, e))?
            .metadata()
            .partition_columns()
            .to_vec())
    }

    /// The table's version this provider reads.
    pub fn version(&self) -> Option<u64> {
        self.table.version()
    }

    /// `OPTIMIZE`: compact the selected partitions' small files (or Z-order them by `zorder`)
    /// in one commit. Returns (files added, files removed).
    async fn compact(&self, filters: &[(String, String, Vec<String>)], zorder: Vec<String>) -> Result<(u64, u64)> {
        use deltalake::operations::optimize::OptimizeType;
        use deltalake::{FilterOp, FilterValue};
        let literals: Vec<deltalake::FilterLiteral<'_>> = filters
            .iter()
            .map(|(c, op, vals)| {
                let op: FilterOp = op.parse().map_err(|e| delta_error(&self.name, e))?;
                let value = if matches!(op, FilterOp::In | FilterOp::NotIn) {
                    FilterValue::Set(vals.iter().map(String::as_str).collect())
                } else {
                    FilterValue::Scalar(vals.first().map(String::as_str).unwrap_or_default())
                };
                Ok((c.as_str(), op, value))
            })
            .collect::<Result<_>>()?;
        let kind = if zorder.is_empty() { OptimizeType::Compact } else { OptimizeType::ZOrder(zorder) };
        let mut builder = self.table.clone().optimize().with_type(kind).with_filters(&literals);
        if let Some(size) = self.target_file_size {
            builder = builder.with_target_size(size);
        }
        let (_table, metrics) = builder.await.map_err(|e| delta_error(&self.name, e))?;
        Ok((metrics.num_files_added, metrics.num_files_removed))
    }
}

/// The Arrow type Bowman exposes for a type deltalake reads.
fn plain_type(t: &DataType) -> DataType {
    match t {
        DataType::Dictionary(_, v) => plain_type(v),
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        other => other.clone(),
    }
}

#[async_trait]
impl bowman_connector::OwnLogTable for DeltaProvider {
    fn with_replace(&self, replace: Replace) -> Arc<dyn TableProvider> {
        self.replacing(replace)
    }

    async fn optimize(&self, filters: &[(String, String, Vec<String>)], zorder: Vec<String>) -> Result<(u64, u64)> {
        self.compact(filters, zorder).await
    }
}

#[async_trait]
impl TableProvider for DeltaProvider {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        // Filters are typed against Bowman's plain schema; deltalake prunes files with them but
        // DataFusion re-applies each one above the scan.
        let answers = self.scan.supports_filters_pushdown(filters)?;
        Ok(answers
            .into_iter()
            .map(|a| match a {
                TableProviderFilterPushDown::Exact => TableProviderFilterPushDown::Inexact,
                other => other,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = self.scan.scan(state, projection, filters, limit).await?;
        sink::cast_plan(plan, &self.schema, projection.map(Vec::as_slice))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if self.historical {
            return Err(ConnectorError::new(
                ErrorKind::Unsupported,
                format!("cannot write to an earlier version of {}; write to the table itself", self.name),
            )
            .into());
        }
        let replace = match (insert_op, &self.replace) {
            (InsertOp::Append, r) => r.clone(),
            (InsertOp::Overwrite, Replace::Nothing) => Replace::All,
            (InsertOp::Overwrite, r) => r.clone(),
            (InsertOp::Replace, _) => {
                return Err(ConnectorError::new(ErrorKind::Unsupported, "REPLACE INTO a delta table").into());
            }
        };
        sink::write_plan(&self.name, &self.table, input, replace, self.target_file_size)
    }
}
