//! File tables whose live data the catalog decides, so a write becomes visible in one catalog
//! transaction and nothing is ever renamed or copied.
//!
//! Two layouts:
//! - *Commit directories* (managed tables): a write puts its files in directories of its own,
//!   `<location>/<partition>/_commit=<id>/` (one `_commit` value per write and partition), and the
//!   catalog lists the live ones. Underneath, the connector's table has one more (hidden)
//!   partition column, `_commit`, and every scan is restricted to the live values.
//! - *Listed* (external tables, whose LOCATION other engines also write): the location is
//!   listed as Spark, Athena or DuckDB would list it, so files other engines put there are read.
//!   Bowman's own files sit beside theirs in the partition directories, named
//!   `<id>.bowman-<commit>.<ext>`; one of them is read only once the catalog lists it as live,
//!   so a write in progress (or one that died) is invisible. An overwrite retires the files it
//!   replaces (Bowman's and other engines') in the same catalog transaction that makes the new
//!   ones live; readers stop seeing them at once, and Bowman deletes them when the statements
//!   that might still read them are done.
//!
//! Either way readers plan against one catalog snapshot, so they see a partition's old or new
//! contents, never a mix. Partition values are kept in paths as Hive keeps them: as text, with
//! NULL written as `__HIVE_DEFAULT_PARTITION__`. The connector's table sees partition columns
//! as strings; [`TrackedTable`] gives them their declared types (and NULL back) on the way out,
//! and turns filters on them into filters on the strings so partitions are still pruned.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use bowman_catalog::{LiveDir, TableDef};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session as DfSession, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ScalarValue, Statistics};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, FileScanConfigBuilder, FileSinkConfig};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, cast, col, lit, when};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::projection::ProjectionExec;
use futures::TryStreamExt;

/// The hidden partition column that names a write's commit directory.
pub const COMMIT_COLUMN: &str = "_commit";

/// How Hive (and Spark, and Bowman) write a NULL partition value in a directory name.
pub const HIVE_NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// What marks a file of an external table as Bowman's: `<id>.bowman-<commit>.<ext>`.
const BOWMAN_FILE_TAG: &str = ".bowman-";

/// Where a tracked table keeps its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// `<partition>/_commit=<id>/<file>`; the catalog lists the live directories.
    CommitDirs,
    /// Files anywhere under the location; Bowman's are live once the catalog says so, others
    /// unless an overwrite retired them.
    Listed,
}

pub(crate) struct TrackedTable {
    /// The connector's table: partition columns as strings (plus `_commit` for commit dirs).
    inner: Arc<dyn TableProvider>,
    /// What readers see: declared types, no `_commit`.
    schema: SchemaRef,
    pub(crate) layout: Layout,
    /// Commit dirs: live `_commit` values. Listed: live Bowman files (relative paths).
    live: HashSet<String>,
    /// Listed: files an overwrite retired (relative paths), hidden until deleted.
    retired: HashSet<String>,
    /// Listed: the same for the other tables over this LOCATION, whose files this one shows.
    sibling_live: HashSet<String>,
    sibling_retired: HashSet<String>,
    pub(crate) def: TableDef,
}

impl std::fmt::Debug for TrackedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackedTable")
            .field("table", &self.def.qualified_name())
            .field("layout", &self.layout)
            .field("live", &self.live.len())
            .finish()
    }
}

/// A new commit id: milliseconds first, so ids sort by age.
pub(crate) fn new_commit_id() -> String {
    let millis = chrono::Utc::now().timestamp_millis();
    format!("{millis:013}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// A partition column's value as its directory name holds it: text, NULL as Hive's marker.
fn partition_text(e: Expr) -> Expr {
    when(e.clone().is_null(), lit(HIVE_NULL_PARTITION)).otherwise(cast(e, DataType::Utf8)).expect("CASE with one WHEN")
}

/// A partition directory's text back as a value of the column's declared type.
fn partition_value(text: Expr, t: &DataType) -> Expr {
    let value = datafusion::functions::core::expr_fn::nullif(text, lit(HIVE_NULL_PARTITION));
    if t == &DataType::Utf8 { value } else { cast(value, t.clone()) }
}

impl TrackedTable {
    pub(crate) fn new(inner: Arc<dyn TableProvider>, def: TableDef, layout: Layout, siblings: &[TableDef]) -> Result<Self> {
        let declared = crate::types::table_fields(&def).map_err(|e| DataFusionError::Plan(e.message()))?;
        let fields: Vec<Field> = declared
            .into_iter()
            .map(|f| if def.partition_columns.contains(f.name()) { f.with_nullable(true) } else { f })
            .collect();
        let live = def.live.iter().map(|l| l.dir.clone()).collect();
        let retired = def.retired.iter().map(|r| r.path.clone()).collect();
        let sibling_live = siblings.iter().flat_map(|t| t.live.iter().map(|l| l.dir.clone())).collect();
        let sibling_retired = siblings.iter().flat_map(|t| t.retired.iter().map(|r| r.path.clone())).collect();
        Ok(TrackedTable {
            inner,
            schema: Arc::new(Schema::new(fields)),
            layout,
            live,
            retired,
            sibling_live,
            sibling_retired,
            def,
        })
    }

    fn partition_type(&self, name: &str) -> Option<&DataType> {
        if !self.def.partition_columns.iter().any(|p| p == name) {
            return None;
        }
        self.schema.field_with_name(name).ok().map(|f| f.data_type())
    }

    /// A filter over the declared columns as a filter over the connector's table.
    fn inner_filter(&self, e: &Expr) -> Result<Expr> {
        // `p = 'value'` on a string partition column means the same on the directory text, and
        // kept in that form it lets the listing go straight to `p=value/`.
        if let Expr::BinaryExpr(b) = e {
            if b.op == datafusion::logical_expr::Operator::Eq {
                let text_eq = |c: &Expr, v: &Expr| match (c, v) {
                    (Expr::Column(c), Expr::Literal(ScalarValue::Utf8(Some(v)), _)) => {
                        self.partition_type(&c.name) == Some(&DataType::Utf8) && v != HIVE_NULL_PARTITION
                    }
                    _ => false,
                };
                if text_eq(&b.left, &b.right) || text_eq(&b.right, &b.left) {
                    return Ok(e.clone());
                }
            }
        }
        Ok(e.clone()
            .transform_up(|e| match &e {
                Expr::Column(c) => match self.partition_type(&c.name) {
                    Some(t) => Ok(Transformed::yes(partition_value(e.clone(), t))),
                    None => Ok(Transformed::no(e)),
                },
                _ => Ok(Transformed::no(e)),
            })?
            .data)
    }

    /// The `_commit` value of each row: unique per write and partition, so an overwrite can
    /// retire one partition of an earlier write and keep the others.
    fn commit_value(&self, commit: &str, texts: &[Expr]) -> Expr {
        if texts.is_empty() {
            return lit(commit.to_string());
        }
        use datafusion::functions::expr_fn::{concat, concat_ws, md5};
        concat(vec![lit(format!("{commit}-")), cast(md5(concat_ws(lit("/"), texts.to_vec())), DataType::Utf8)])
    }

    /// Whether a file of a Listed table is part of this snapshot.
    fn visible(&self, relative: &str) -> bool {
        if self.retired.contains(relative) || self.sibling_retired.contains(relative) {
            return false;
        }
        !is_bowman_file(relative) || self.live.contains(relative) || self.sibling_live.contains(relative)
    }

    /// Drop the files this snapshot does not show from a scan of the connector's table.
    fn visible_files(&self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        if is::<EmptyExec>(&plan) {
            return Ok(plan);
        }
        let any: &dyn std::any::Any = plan.as_ref();
        let config = any
            .downcast_ref::<DataSourceExec>()
            .and_then(|e| {
                let source: &dyn std::any::Any = e.data_source().as_ref();
                source.downcast_ref::<FileScanConfig>()
            })
            .ok_or_else(|| DataFusionError::Internal(format!("{}: the file scan is not a file source", self.def.qualified_name())))?;
        let prefix = location_prefix(&self.def)?;
        let relative = |p: &str| p.strip_prefix(prefix.as_str()).unwrap_or(p).trim_start_matches('/').to_string();
        let mut hidden = false;
        let groups: Vec<FileGroup> = config
            .file_groups
            .iter()
            .map(|g| {
                let files: Vec<_> = g
                    .files()
                    .iter()
                    .filter(|f| {
                        let keep = self.visible(&relative(f.object_meta.location.as_ref()));
                        hidden |= !keep;
                        keep
                    })
                    .cloned()
                    .collect();
                FileGroup::new(files)
            })
            .filter(|g| !g.is_empty())
            .collect();
        if !hidden {
            return Ok(plan);
        }
        if groups.is_empty() {
            return Ok(Arc::new(EmptyExec::new(plan.schema())));
        }
        // The listing's statistics counted the hidden files too.
        let unknown = Statistics::new_unknown(config.file_source.table_schema().table_schema());
        let config = FileScanConfigBuilder::from(config.clone()).with_file_groups(groups).with_statistics(unknown).build();
        Ok(DataSourceExec::from_data_source(config))
    }

    /// Give the partition columns of a scan of the connector's table their declared types.
    fn typed(&self, state: &dyn DfSession, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        let input = plan.schema();
        if !input.fields().iter().any(|f| self.partition_type(f.name()).is_some()) {
            return Ok(plan);
        }
        let df_schema = DFSchema::try_from(input.as_ref().clone())?;
        let mut exprs = Vec::with_capacity(input.fields().len());
        for (i, f) in input.fields().iter().enumerate() {
            let e: Arc<dyn datafusion::physical_plan::PhysicalExpr> = match self.partition_type(f.name()) {
                Some(t) => state.create_physical_expr(partition_value(col(f.name().as_str()), t), &df_schema)?,
                None => Arc::new(datafusion::physical_expr::expressions::Column::new(f.name(), i)),
            };
            exprs.push((e, f.name().clone()));
        }
        Ok(Arc::new(ProjectionExec::try_new(exprs, plan)?))
    }

    fn listing(&self) -> Result<&ListingTable> {
        let any: &dyn std::any::Any = self.inner.as_ref();
        any.downcast_ref::<ListingTable>()
            .ok_or_else(|| DataFusionError::Internal(format!("{} is not a file table", self.def.qualified_name())))
    }

    /// Listed layout: other engines' files the table shows now, as (partition, relative path).
    async fn foreign_files(&self, state: &dyn DfSession) -> Result<Vec<(String, String)>> {
        let listing = self.listing()?;
        let location = self.def.location.as_deref().unwrap_or_default();
        let files = location_files(state.runtime_env(), location).await.map_err(|e| DataFusionError::External(Box::new(e)))?;
        let ext = listing.options().file_extension.clone();
        Ok(files
            .into_iter()
            .filter_map(|(rel, _)| {
                let name = rel.rsplit('/').next().unwrap_or(&rel);
                let hidden_name = name.starts_with('_') || name.starts_with('.');
                // Other engines' files, and Bowman's written through other tables over this
                // location: everything this table shows that it did not write itself.
                if hidden_name || !name.ends_with(&ext) || self.live.contains(&rel) || !self.visible(&rel) {
                    return None;
                }
                let partition = rel.rsplit_once('/').map(|(p, _)| p.to_string()).unwrap_or_default();
                Some((partition, rel))
            })
            .collect())
    }
}

/// Every object under a table's location: its path relative to the location (as listings
/// spell it, partition values encoded) and its full path. A location not made yet is empty.
pub(crate) async fn location_files(
    runtime: &datafusion::execution::runtime_env::RuntimeEnv,
    location: &str,
) -> crate::error::Result<Vec<(String, object_store::path::Path)>> {
    let url = bowman_connector_files::table_url(location)?;
    let store = runtime.object_store(&url)?;
    let prefix = url.prefix().as_ref().to_string();
    let metas: Vec<_> = match store.list(Some(url.prefix())).try_collect().await {
        Ok(m) => m,
        Err(object_store::Error::NotFound { .. }) => Vec::new(),
        // Kept as an object-store error, so an unreachable S3 is 08001/08006, not a disk error.
        Err(e) => {
            return Err(DataFusionError::Context(format!("cannot list {location}"), Box::new(DataFusionError::ObjectStore(Box::new(e)))).into());
        }
    };
    Ok(metas
        .into_iter()
        .map(|m| {
            let full = m.location.as_ref();
            let rel = full.strip_prefix(prefix.as_str()).unwrap_or(full).trim_start_matches('/').to_string();
            (rel, m.location)
        })
        .collect())
}

/// Whether a scan failed because a file it listed was gone when it was read.
fn vanished(e: &DataFusionError) -> bool {
    matches!(e.find_root(), DataFusionError::ObjectStore(inner) if matches!(**inner, object_store::Error::NotFound { .. }))
}

fn is<T: 'static>(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let any: &dyn std::any::Any = plan.as_ref();
    any.is::<T>()
}

/// The object-store path of a table's location (no leading or trailing `/`).
fn location_prefix(def: &TableDef) -> Result<String> {
    let location = def.location.as_deref().ok_or_else(|| DataFusionError::Internal("file table without location".into()))?;
    let url = bowman_connector_files::table_url(location)?;
    Ok(url.prefix().as_ref().to_string())
}

#[async_trait]
impl TableProvider for TrackedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // `_commit` is the connector table's last column, so visible indices are the same.
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let projected = Arc::new(self.schema.project(&projection)?);
        if self.layout == Layout::CommitDirs && self.live.is_empty() {
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let mut filters = filters.iter().map(|f| self.inner_filter(f)).collect::<Result<Vec<_>>>()?;
        if self.layout == Layout::CommitDirs {
            let live: Vec<Expr> = self.live.iter().map(|d| lit(ScalarValue::Utf8(Some(d.clone())))).collect();
            filters.push(col(COMMIT_COLUMN).in_list(live, false));
        }
        // Listing a Listed table reads the footers of every file there, hidden ones included,
        // and a file an overwrite retired may be deleted meanwhile: list again then (this
        // snapshot does not show that file anyway).
        let mut attempts = 0;
        let plan = loop {
            match self.inner.scan(state, Some(&projection), &filters, limit).await {
                Err(e) if self.layout == Layout::Listed && attempts < 3 && vanished(&e) => attempts += 1,
                other => break other?,
            }
        };
        let plan = match self.layout {
            Layout::Listed => self.visible_files(plan)?,
            Layout::CommitDirs => plan,
        };
        if is::<EmptyExec>(&plan) {
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        self.typed(state, plan)
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        let inner: Vec<Expr> = filters.iter().map(|f| self.inner_filter(f)).collect::<Result<_>>()?;
        self.inner.supports_filters_pushdown(&inner.iter().collect::<Vec<_>>())
    }

    async fn insert_into(
        &self,
        _state: &dyn DfSession,
        _input: Arc<dyn ExecutionPlan>,
        _insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // Every write to a tracked table is a BowmanWrite plan (Session::run_plan turns
        // DataFusion's INSERTs into one), whose commit makes its files live. A sink planned
        // here would write files nothing commits.
        Err(DataFusionError::Internal(format!(
            "{}: a write to a tracked table must be planned as Bowman's write, not DataFusion's INSERT",
            self.def.qualified_name()
        )))
    }
}

/// Everything a writer of a tracked table needs, made when the write is planned: the commit
/// id, how rows become what the files hold (partition values as text, the `_commit` column),
/// and a sink that writes them under the table's location.
#[derive(Debug)]
pub(crate) struct WriteSetup {
    pub commit: String,
    pub layout: Layout,
    pub partition_columns: Vec<String>,
    /// Applied to each input batch: the input's columns with partition values as text, then
    /// `_commit` for commit directories.
    pub exprs: Vec<(Arc<dyn datafusion::physical_plan::PhysicalExpr>, String)>,
    pub file_schema: SchemaRef,
    /// A `DataSinkExec` whose sink the writers share (each `write_all` call names its own files).
    pub sink: Arc<dyn ExecutionPlan>,
    /// Listed layout, overwrites: other engines' files the table showed when the write was
    /// planned, as (partition, path relative to the location). An overwrite retires those in
    /// the partitions it replaces; files that appear while it runs are kept.
    pub foreign: Vec<(String, String)>,
    /// Commit directories: the write's intent in the catalog, held while the plan lives, so
    /// no sweeper takes its files for a dead write's.
    pub intent: Option<Arc<crate::sweeper::WriteIntentGuard>>,
}

impl TrackedTable {
    /// Plan a write of rows shaped like `input_schema` (the table's columns, declared types).
    pub(crate) async fn prepare_write(&self, state: &dyn DfSession, input_schema: &SchemaRef, overwrite: bool) -> Result<WriteSetup> {
        let (mut setup, config) = self.prepare(state, input_schema, overwrite).await?;
        let placeholder: Arc<dyn ExecutionPlan> = Arc::new(EmptyExec::new(setup.file_schema.clone()));
        let mut format = self.listing()?.options().format.clone();
        let any: &dyn std::any::Any = format.as_ref();
        if any.is::<datafusion::datasource::file_format::parquet::ParquetFormat>() {
            // The table's format was made when the table was opened; its writer takes the
            // session's Parquet settings as they are now (`SET datafusion.execution.parquet.*`),
            // under the table's own `compression` option.
            let mut options = state.default_table_options().parquet;
            if let Some((_, c)) = self.def.options.iter().find(|(k, _)| k.eq_ignore_ascii_case("compression")) {
                options.global.compression = Some(c.to_ascii_lowercase());
            }
            format = Arc::new(datafusion::datasource::file_format::parquet::ParquetFormat::default().with_options(options));
        }
        setup.sink = format.create_writer_physical_plan(placeholder, state, config, None).await?;
        Ok(setup)
    }

    async fn prepare(&self, state: &dyn DfSession, input_schema: &SchemaRef, overwrite: bool) -> Result<(WriteSetup, FileSinkConfig)> {
        let listing = self.listing()?;
        let table_path = listing.table_paths()[0].clone();
        if !table_path.is_collection() {
            return Err(DataFusionError::Plan(format!(
                "{}: its LOCATION names one file, which can be read but not written; give a directory",
                self.def.qualified_name()
            )));
        }
        let commit = new_commit_id();
        let df_schema = DFSchema::try_from(input_schema.as_ref().clone())?;
        let mut exprs = Vec::with_capacity(input_schema.fields().len() + 1);
        let mut texts = Vec::new();
        let mut fields = Vec::with_capacity(input_schema.fields().len() + 1);
        for (i, f) in input_schema.fields().iter().enumerate() {
            let e: Arc<dyn datafusion::physical_plan::PhysicalExpr> = if self.def.partition_columns.contains(f.name()) {
                let text = partition_text(col(f.name().as_str()));
                texts.push(text.clone());
                fields.push(Field::new(f.name(), DataType::Utf8, true));
                state.create_physical_expr(text, &df_schema)?
            } else {
                fields.push(f.as_ref().clone());
                Arc::new(datafusion::physical_expr::expressions::Column::new(f.name(), i))
            };
            exprs.push((e, f.name().clone()));
        }
        let mut partition_cols: Vec<(String, DataType)> =
            self.def.partition_columns.iter().map(|p| (p.clone(), DataType::Utf8)).collect();
        let ext = listing.options().format.get_ext();
        let file_extension = match self.layout {
            Layout::CommitDirs => {
                let value = state.create_physical_expr(self.commit_value(&commit, &texts), &df_schema)?;
                exprs.push((value, COMMIT_COLUMN.to_string()));
                fields.push(Field::new(COMMIT_COLUMN, DataType::Utf8, false));
                partition_cols.push((COMMIT_COLUMN.to_string(), DataType::Utf8));
                ext
            }
            Layout::Listed => format!("{}{commit}.{ext}", &BOWMAN_FILE_TAG[1..]),
        };
        let file_schema: SchemaRef = Arc::new(Schema::new(fields));
        let foreign = match self.layout {
            Layout::Listed if overwrite => self.foreign_files(state).await?,
            _ => Vec::new(),
        };
        let data_columns = file_schema.fields().len() - partition_cols.len();
        let config = FileSinkConfig {
            original_url: String::default(),
            object_store_url: table_path.object_store(),
            table_paths: vec![table_path],
            file_group: FileGroup::default(),
            output_schema: file_schema.clone(),
            table_partition_cols: partition_cols,
            insert_op: InsertOp::Append,
            // A table of partition columns only still needs a column in its files to count
            // rows by; the copy of the partition values in the file is never read.
            keep_partition_by_columns: data_columns == 0,
            file_extension,
            file_output_mode: datafusion::datasource::physical_plan::FileOutputMode::Automatic,
        };
        let setup = WriteSetup {
            commit,
            layout: self.layout,
            partition_columns: self.def.partition_columns.clone(),
            exprs,
            file_schema,
            sink: Arc::new(EmptyExec::new(Arc::new(Schema::empty()))),
            foreign,
            intent: None,
        };
        Ok((setup, config))
    }
}

/// Whether a file under an external table's location was written by Bowman.
pub(crate) fn is_bowman_file(relative: &str) -> bool {
    relative.rsplit('/').next().unwrap_or(relative).contains(BOWMAN_FILE_TAG)
}

/// Files or commit directories of write `commit` under a table's files, from their paths
/// relative to its location.
///
/// Commit dirs: `dt=2018-03-05/_commit=<commit>-<hash>/part.parquet` gives
/// `{partition: "dt=2018-03-05", dir: "<commit>-<hash>"}`. Listed: the file
/// `dt=2018-03-05/x.bowman-<commit>.parquet` gives `{partition: "dt=2018-03-05", dir: <its path>}`.
pub(crate) fn written_by_commit<'a>(layout: Layout, paths: impl Iterator<Item = &'a str>, commit: &str) -> Vec<LiveDir> {
    let mut out: Vec<LiveDir> = Vec::new();
    for path in paths {
        let live = match layout {
            Layout::CommitDirs => {
                let segments: Vec<&str> = path.split('/').collect();
                let Some(pos) = segments.iter().position(|s| s.starts_with("_commit=")) else { continue };
                let dir = &segments[pos]["_commit=".len()..];
                if dir != commit && !dir.starts_with(&format!("{commit}-")) {
                    continue;
                }
                LiveDir { partition: segments[..pos].join("/"), dir: dir.to_string() }
            }
            Layout::Listed => {
                let (partition, name) = path.rsplit_once('/').unwrap_or(("", path));
                if !name.contains(&format!("{BOWMAN_FILE_TAG}{commit}.")) {
                    continue;
                }
                LiveDir { partition: partition.to_string(), dir: path.to_string() }
            }
        };
        if !out.contains(&live) {
            out.push(live);
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_ids_sort_by_age() {
        let a = new_commit_id();
        assert_eq!(a.len(), 26);
        assert!(a[..13].parse::<i64>().unwrap() > 1_700_000_000_000);
    }

    #[test]
    fn finds_the_directories_of_one_write() {
        let paths = [
            "dt=2018-03-05/_commit=111-aa/p.parquet",
            "dt=2018-03-05/_commit=111-aa/q.parquet",
            "dt=2018-03-06/_commit=111-bb/p.parquet",
            "dt=2018-03-06/_commit=222-cc/p.parquet",
            "_commit=111/p.parquet",
        ];
        let dirs = written_by_commit(Layout::CommitDirs, paths.iter().copied(), "111");
        assert_eq!(
            dirs,
            vec![
                LiveDir { partition: "".into(), dir: "111".into() },
                LiveDir { partition: "dt=2018-03-05".into(), dir: "111-aa".into() },
                LiveDir { partition: "dt=2018-03-06".into(), dir: "111-bb".into() },
            ]
        );
    }

    #[test]
    fn finds_the_files_of_one_write() {
        let paths = [
            "dt=2018-03-05/abc.bowman-111.parquet",
            "dt=2018-03-05/part-00000-111.snappy.parquet",
            "dt=2018-03-06/def.bowman-111.parquet",
            "dt=2018-03-06/ghi.bowman-1112.parquet",
            "jkl_0.bowman-111.parquet",
        ];
        let files = written_by_commit(Layout::Listed, paths.iter().copied(), "111");
        assert_eq!(
            files,
            vec![
                LiveDir { partition: "".into(), dir: "jkl_0.bowman-111.parquet".into() },
                LiveDir { partition: "dt=2018-03-05".into(), dir: "dt=2018-03-05/abc.bowman-111.parquet".into() },
                LiveDir { partition: "dt=2018-03-06".into(), dir: "dt=2018-03-06/def.bowman-111.parquet".into() },
            ]
        );
    }
}
