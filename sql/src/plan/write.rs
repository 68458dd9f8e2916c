//! A write to a tracked file table, as a plan:
//!
//! ```text
//! CommitExec            one catalog transaction: the writers' directories become live,
//!   CoalescePartitionsExec   what the write replaces is retired
//!     TrackedWriteExec  one writer per input partition, in parallel; reports what it wrote
//!       SortExec (preserve_partitioning)   SORT BY, within each writer
//!         RepartitionExec (hash)           DISTRIBUTE BY, or the partition columns
//!           <the query>
//! ```
//!
//! The writer states what it needs (its input distributed by the DISTRIBUTE BY expressions or
//! the table's partition columns, and sorted by SORT BY within each partition) and DataFusion's
//! optimizer puts the exchange and the sorts in. All rows of a partition value reach one
//! writer, so a write still makes one file per partition value, sorted as asked, while every
//! core writes. A write to an unpartitioned table without DISTRIBUTE BY keeps one writer (one
//! file, as before).
//!
//! Writers report the directories (and rows) they wrote as rows; the commit takes them from
//! there, so nothing lists the table's location to find what a write produced.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock, Mutex};

use async_trait::async_trait;
use bowman_catalog::LiveDir;
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session as DfSession, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, DFSchemaRef, DataFusionError, Result};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, SortExpr, UserDefinedLogicalNode, UserDefinedLogicalNodeCore};
use datafusion::physical_expr::{EquivalenceProperties, LexRequirement, OrderingRequirements, PhysicalSortExpr, PhysicalSortRequirement};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties, Partitioning, PhysicalExpr, PlanProperties};
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use futures::{StreamExt, TryStreamExt};

use crate::commit::Commit;
use crate::plan::roll::{FileLimits, write_rolling};
use crate::tracked::{COMMIT_COLUMN, Layout, TrackedTable, WriteSetup};

/// What every write plan returns: the number of rows written, in a column named as
/// DataFusion's own sinks name it.
static COUNT_SCHEMA: LazyLock<SchemaRef> =
    LazyLock::new(|| Arc::new(Schema::new(vec![Field::new("count", DataType::UInt64, false)])));

static COUNT_DFSCHEMA: LazyLock<DFSchemaRef> =
    LazyLock::new(|| Arc::new(DFSchema::try_from(COUNT_SCHEMA.as_ref().clone()).expect("one field")));

/// What a writer reports: one row per directory (or, for external tables, partition) it wrote.
static WRITTEN_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("partition", DataType::Utf8, false),
        Field::new("dir", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("files", DataType::UInt64, false),
    ]))
});

/// The logical write: rows of `input` (the table's columns, in table order, declared types)
/// written to a tracked table and committed with `commit`'s replace mode.
#[derive(Debug, Clone)]
pub(crate) struct WriteNode {
    pub(crate) table: String,
    pub(crate) provider: Arc<dyn TableProvider>,
    pub(crate) commit: Arc<Commit>,
    /// DISTRIBUTE BY; empty means the table's partition columns.
    pub(crate) distribute_by: Vec<Expr>,
    /// SORT BY: the order of rows within each writer (so within each file).
    pub(crate) sort_by: Vec<SortExpr>,
    pub(crate) input: LogicalPlan,
}

impl WriteNode {
    pub(crate) fn new(
        provider: &Arc<dyn TableProvider>,
        commit: Commit,
        distribute_by: Vec<Expr>,
        sort_by: Vec<SortExpr>,
        input: LogicalPlan,
    ) -> WriteNode {
        WriteNode { table: commit.table.clone(), provider: provider.clone(), commit: Arc::new(commit), distribute_by, sort_by, input }
    }

    pub(crate) fn plan(self) -> LogicalPlan {
        LogicalPlan::Extension(Extension { node: Arc::new(self) })
    }

    fn key(&self) -> (String, String, String, String, String) {
        (
            self.table.clone(),
            self.commit.mode.describe(),
            format!("{:?}", self.distribute_by),
            format!("{:?}", self.sort_by),
            format!("{}", self.input.display()),
        )
    }
}

impl PartialEq for WriteNode {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.commit, &other.commit) && self.key() == other.key() && self.input == other.input
    }
}

impl Eq for WriteNode {}

impl PartialOrd for WriteNode {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.key().partial_cmp(&other.key())
    }
}

impl Hash for WriteNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    items.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", ")
}

impl UserDefinedLogicalNodeCore for WriteNode {
    fn name(&self) -> &str {
        "BowmanWrite"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &COUNT_DFSCHEMA
    }

    fn expressions(&self) -> Vec<Expr> {
        self.distribute_by.iter().cloned().chain(self.sort_by.iter().map(|s| s.expr.clone())).collect()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "BowmanWrite: table={}, replace={}", self.table, self.commit.mode.describe())?;
        if !self.commit.partition_columns.is_empty() {
            write!(f, ", partition_by=[{}]", self.commit.partition_columns.join(", "))?;
        }
        if !self.distribute_by.is_empty() {
            write!(f, ", distribute_by=[{}]", list(&self.distribute_by))?;
        }
        if !self.sort_by.is_empty() {
            write!(f, ", sort_by=[{}]", list(&self.sort_by))?;
        }
        Ok(())
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> Result<Self> {
        if inputs.len() != 1 || exprs.len() != self.distribute_by.len() + self.sort_by.len() {
            return Err(DataFusionError::Internal("BowmanWrite takes one input and its own expressions".into()));
        }
        let (distribute, sort) = exprs.split_at(self.distribute_by.len());
        let sort_by = self.sort_by.iter().zip(sort).map(|(s, e)| SortExpr { expr: e.clone(), ..s.clone() }).collect();
        Ok(WriteNode { distribute_by: distribute.to_vec(), sort_by, input: inputs.swap_remove(0), ..self.clone() })
    }

    fn necessary_children_exprs(&self, _output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        // Every column of the input is written.
        Some(vec![(0..self.input.schema().fields().len()).collect()])
    }
}

/// Plans [`WriteNode`]s as a [`CommitExec`] over a [`TrackedWriteExec`].
#[derive(Debug, Default)]
pub(crate) struct WritePlanner;

#[async_trait]
impl ExtensionPlanner for WritePlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn DfSession,
        ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(node) = node.as_any().downcast_ref::<WriteNode>() else {
            return Ok(None);
        };
        let (Some(logical), Some(input)) = (logical_inputs.first(), physical_inputs.first()) else {
            return Err(DataFusionError::Internal("BowmanWrite without an input".into()));
        };
        let schema = logical.schema();
        let any: &dyn Any = node.provider.as_ref();
        let tracked = any
            .downcast_ref::<TrackedTable>()
            .ok_or_else(|| DataFusionError::Internal(format!("{} is not a tracked table", node.table)))?;
        let mut setup = tracked.prepare_write(session, &input.schema(), node.commit.mode.replaces()).await?;
        setup.intent = node.commit.register(&setup).await.map_err(|e| DataFusionError::External(Box::new(e)))?;

        // Which writer gets a row: DISTRIBUTE BY, else the partition columns (all rows of a
        // partition value reach one writer, so it makes one file), else one writer.
        let keys: Vec<Expr> = if node.distribute_by.is_empty() {
            setup.partition_columns.iter().map(|c| datafusion::logical_expr::col(datafusion::common::Column::from_name(c))).collect()
        } else {
            node.distribute_by.clone()
        };
        let keys = keys.iter().map(|e| planner.create_physical_expr(e, schema, session, ctx)).collect::<Result<Vec<_>>>()?;
        let mut sort = Vec::with_capacity(node.sort_by.len());
        for s in &node.sort_by {
            let expr = planner.create_physical_expr(&s.expr, schema, session, ctx)?;
            sort.push(PhysicalSortExpr::new(expr, datafusion::arrow::compute::SortOptions::new(!s.asc, s.nulls_first)));
        }
        let settings = session.config_options().extensions.get::<crate::settings::BowmanOptions>().cloned().unwrap_or_default();
        let limits = FileLimits::for_table(&tracked.def, &settings).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let writer = TrackedWriteExec::new(node.table.clone(), input.clone(), Arc::new(setup), keys, sort, limits);
        let commit = CommitExec::new(Arc::new(writer), node.commit.clone());
        Ok(Some(Arc::new(commit)))
    }
}

/// Writers of a tracked table: partition `i` writes the rows of input partition `i` through
/// the table's file sink, and answers one row per directory it wrote (partition, directory,
/// rows).
#[derive(Debug)]
pub(crate) struct TrackedWriteExec {
    table: String,
    input: Arc<dyn ExecutionPlan>,
    setup: Arc<WriteSetup>,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    sort: Vec<PhysicalSortExpr>,
    /// When a writer starts its next file (none: one file per directory it writes).
    limits: FileLimits,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl TrackedWriteExec {
    fn new(
        table: String,
        input: Arc<dyn ExecutionPlan>,
        setup: Arc<WriteSetup>,
        keys: Vec<Arc<dyn PhysicalExpr>>,
        sort: Vec<PhysicalSortExpr>,
        limits: FileLimits,
    ) -> Self {
        let writers = input.output_partitioning().partition_count();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(WRITTEN_SCHEMA.clone()),
            Partitioning::UnknownPartitioning(writers),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        TrackedWriteExec { table, input, setup, keys, sort, limits, properties, metrics: ExecutionPlanMetricsSet::new() }
    }
}

impl DisplayAs for TrackedWriteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let layout = match self.setup.layout {
            Layout::CommitDirs => "commit directories",
            Layout::Listed => "files beside other engines'",
        };
        write!(f, "TrackedWriteExec: table={}, commit={}, layout={layout}", self.table, self.setup.commit)?;
        if !self.setup.partition_columns.is_empty() {
            write!(f, ", partition_by=[{}]", self.setup.partition_columns.join(", "))?;
        }
        write!(f, ", writers={}{}", self.properties.output_partitioning().partition_count(), self.limits.describe())
    }
}

impl ExecutionPlan for TrackedWriteExec {
    fn name(&self) -> &str {
        "TrackedWriteExec"
    }

    fn schema(&self) -> SchemaRef {
        WRITTEN_SCHEMA.clone()
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        if self.keys.is_empty() {
            vec![Distribution::SinglePartition]
        } else {
            vec![Distribution::KeyPartitioned(self.keys.clone())]
        }
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        let requirement = LexRequirement::new(self.sort.iter().cloned().map(PhysicalSortRequirement::from));
        vec![requirement.map(OrderingRequirements::new)]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        // A single partition satisfies any key distribution; say so to get one writer per core.
        vec![!self.keys.is_empty()]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for e in self.keys.iter().chain(self.sort.iter().map(|s| &s.expr)) {
            if f(e)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal("TrackedWriteExec takes one input".into()));
        }
        let mut writer = TrackedWriteExec::new(
            self.table.clone(),
            children.swap_remove(0),
            self.setup.clone(),
            self.keys.clone(),
            self.sort.clone(),
            self.limits,
        );
        // The same write, rebuilt around new inputs (yield points, the optimizer's exchanges):
        // its progress stays readable from the plan it was made from.
        writer.metrics = self.metrics.clone();
        Ok(Arc::new(writer))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context.clone())?;
        let rows_written = MetricBuilder::new(&self.metrics).counter("rows_written", partition);
        let files_written = MetricBuilder::new(&self.metrics).counter("files_written", partition);
        let written = Arc::new(Mutex::new(Written::default()));
        let setup = self.setup.clone();
        let (tap_setup, tap_written) = (setup.clone(), written.clone());
        let rows = input.map(move |batch| {
            let batch = batch?;
            let out = file_batch(&tap_setup, &batch)?;
            tap_written.lock().expect("written directories").record(&tap_setup, &out);
            rows_written.add(batch.num_rows());
            Ok(out)
        });
        let rows: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(setup.file_schema.clone(), rows));
        let limits = self.limits;
        let done = async move {
            // Files per directory: one, unless the writer rolls them.
            let files = if limits.is_unlimited() {
                let any: &dyn Any = setup.sink.as_ref();
                let sink = any.downcast_ref::<DataSinkExec>().ok_or_else(|| DataFusionError::Internal("the file writer is not a sink".into()))?;
                sink.sink().write_all(rows, &context).await?;
                HashMap::new()
            } else {
                write_rolling(setup.clone(), limits, rows, context).await?
            };
            let written = std::mem::take(&mut *written.lock().expect("written directories"));
            let batch = written.batch(&files)?;
            files_written.add(files_column(&batch).iter().flatten().sum::<u64>() as usize);
            Ok(batch)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(WRITTEN_SCHEMA.clone(), futures::stream::once(done))))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// An input batch as the files hold it: partition values as text, plus `_commit`.
fn file_batch(setup: &WriteSetup, batch: &RecordBatch) -> Result<RecordBatch> {
    let columns = setup
        .exprs
        .iter()
        .map(|(e, _)| e.evaluate(batch).and_then(|v| v.into_array(batch.num_rows())))
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok(RecordBatch::try_new(setup.file_schema.clone(), columns)?)
}

/// What one writer wrote: rows per (partition path, directory).
#[derive(Debug, Default)]
pub(crate) struct Written {
    /// Keyed by the `_commit` value (commit directories) or the partition path (external
    /// tables, whose files are found by their commit tag at commit time).
    dirs: HashMap<String, (String, String, u64)>,
}

impl Written {
    fn record(&mut self, setup: &WriteSetup, batch: &RecordBatch) {
        let texts: Vec<&StringArray> = setup
            .partition_columns
            .iter()
            .filter_map(|c| batch.column_by_name(c).and_then(|a| a.as_any().downcast_ref::<StringArray>()))
            .collect();
        let partition = |row: usize| partition_path(setup, &texts, row);
        match setup.layout {
            Layout::CommitDirs => {
                let Some(dirs) = batch.column_by_name(COMMIT_COLUMN).and_then(|a| a.as_any().downcast_ref::<StringArray>()) else {
                    return;
                };
                for row in 0..batch.num_rows() {
                    let dir = dirs.value(row);
                    match self.dirs.get_mut(dir) {
                        Some(entry) => entry.2 += 1,
                        None => {
                            self.dirs.insert(dir.to_string(), (partition(row), dir.to_string(), 1));
                        }
                    }
                }
            }
            Layout::Listed if texts.is_empty() => {
                self.dirs.entry(String::new()).or_insert_with(|| (String::new(), String::new(), 0)).2 += batch.num_rows() as u64;
            }
            Layout::Listed => {
                for row in 0..batch.num_rows() {
                    let p = partition(row);
                    self.dirs.entry(p.clone()).or_insert_with(|| (p, String::new(), 0)).2 += 1;
                }
            }
        }
    }

    /// The report: one row per directory, with the files written there (`files`, by the same
    /// key as [`Written::dirs`]; one where it does not say).
    fn batch(self, files: &HashMap<String, u64>) -> Result<RecordBatch> {
        let mut partitions = Vec::with_capacity(self.dirs.len());
        let mut dirs = Vec::with_capacity(self.dirs.len());
        let mut rows = Vec::with_capacity(self.dirs.len());
        let mut counts = Vec::with_capacity(self.dirs.len());
        for (key, (p, d, n)) in self.dirs {
            counts.push(files.get(&key).copied().unwrap_or(1));
            partitions.push(p);
            dirs.push(d);
            rows.push(n);
        }
        Ok(RecordBatch::try_new(
            WRITTEN_SCHEMA.clone(),
            vec![
                Arc::new(StringArray::from(partitions)),
                Arc::new(StringArray::from(dirs)),
                Arc::new(UInt64Array::from(rows)),
                Arc::new(UInt64Array::from(counts)),
            ],
        )?)
    }
}

/// The `files` column of a writer's report.
fn files_column(batch: &RecordBatch) -> &UInt64Array {
    batch.column(3).as_any().downcast_ref::<UInt64Array>().expect("a writer's report has a files column")
}

/// The partition path of `row` (`dt=2018-03-05/kind=a`), each segment encoded as a path part,
/// from the partition columns as text (`texts`, in the order of the table's partition columns).
pub(crate) fn partition_path(setup: &WriteSetup, texts: &[&StringArray], row: usize) -> String {
    setup
        .partition_columns
        .iter()
        .zip(texts)
        .map(|(c, a)| object_store::path::PathPart::from(format!("{c}={}", a.value(row))).as_ref().to_string())
        .collect::<Vec<_>>()
        .join("/")
}

impl Written {
    /// The key [`Written::dirs`] files `row` under.
    pub(crate) fn key(setup: &WriteSetup, commit_dirs: Option<&StringArray>, texts: &[&StringArray], row: usize) -> String {
        match (setup.layout, commit_dirs) {
            (Layout::CommitDirs, Some(dirs)) => dirs.value(row).to_string(),
            _ => partition_path(setup, texts, row),
        }
    }
}

/// The commit of a write: gathers what every writer reported and makes it live in one catalog
/// transaction (retiring what the write replaces). Answers the rows written.
#[derive(Debug)]
pub(crate) struct CommitExec {
    writer: Arc<dyn ExecutionPlan>,
    setup: Arc<WriteSetup>,
    commit: Arc<Commit>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl CommitExec {
    fn new(writer: Arc<TrackedWriteExec>, commit: Arc<Commit>) -> Self {
        let setup = writer.setup.clone();
        Self::with_input(writer, setup, commit)
    }

    fn with_input(writer: Arc<dyn ExecutionPlan>, setup: Arc<WriteSetup>, commit: Arc<Commit>) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(COUNT_SCHEMA.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        CommitExec { writer, setup, commit, properties, metrics: ExecutionPlanMetricsSet::new() }
    }
}

impl DisplayAs for CommitExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommitExec: table={}, replace={}, catalog transaction", self.commit.table, self.commit.mode.describe())
    }
}

impl ExecutionPlan for CommitExec {
    fn name(&self) -> &str {
        "CommitExec"
    }

    fn schema(&self) -> SchemaRef {
        COUNT_SCHEMA.clone()
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::SinglePartition]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.writer]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal("CommitExec takes one input".into()));
        }
        let mut commit = CommitExec::with_input(children.swap_remove(0), self.setup.clone(), self.commit.clone());
        commit.metrics = self.metrics.clone();
        Ok(Arc::new(commit))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!("CommitExec has one partition, not {partition}")));
        }
        let reports = self.writer.execute(0, context.clone())?;
        let (setup, commit) = (self.setup.clone(), self.commit.clone());
        let rows_metric = MetricBuilder::new(&self.metrics).counter("rows_written", 0);
        let files_metric = MetricBuilder::new(&self.metrics).counter("files_written", 0);
        let done = async move {
            let batches: Vec<RecordBatch> = reports.try_collect().await?;
            let mut dirs: BTreeMap<(String, String), u64> = BTreeMap::new();
            for b in &batches {
                let p = b.column(0).as_any().downcast_ref::<StringArray>();
                let d = b.column(1).as_any().downcast_ref::<StringArray>();
                let n = b.column(2).as_any().downcast_ref::<UInt64Array>();
                let (Some(p), Some(d), Some(n)) = (p, d, n) else {
                    return Err(DataFusionError::Internal("a writer's report has the wrong columns".into()));
                };
                for i in 0..b.num_rows() {
                    *dirs.entry((p.value(i).to_string(), d.value(i).to_string())).or_default() += n.value(i);
                }
            }
            let rows: u64 = dirs.values().sum();
            let added = match setup.layout {
                Layout::CommitDirs => dirs.keys().map(|(partition, dir)| LiveDir { partition: partition.clone(), dir: dir.clone() }).collect(),
                Layout::Listed => {
                    let partitions: Vec<String> = dirs.keys().map(|(p, _)| p.clone()).collect();
                    commit.files_written(&setup, &partitions).await.map_err(|e| DataFusionError::External(Box::new(e)))?
                }
            };
            files_metric.add(match setup.layout {
                Layout::CommitDirs => batches.iter().map(|b| files_column(b).iter().flatten().sum::<u64>() as usize).sum(),
                Layout::Listed => added.len(),
            });
            rows_metric.add(rows as usize);
            commit.apply(&setup, added).await.map_err(|e| DataFusionError::External(Box::new(e)))?;
            Ok(RecordBatch::try_new(COUNT_SCHEMA.clone(), vec![Arc::new(UInt64Array::from(vec![rows]))])?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(COUNT_SCHEMA.clone(), futures::stream::once(done))))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}
