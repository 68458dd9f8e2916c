//! Writing to a Delta table: stream the rows into new data files, then commit one Delta
//! version that adds them and removes whatever the statement replaces.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::num::NonZeroU64;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::{Column, cast as cast_expr};
use datafusion::physical_expr::projection::ProjectionExpr;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use deltalake::DeltaTable;
use deltalake::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake::kernel::transaction::{CommitBuilder, TableReference as _};
use deltalake::table::config::TablePropertiesExt as _;
use deltalake::kernel::{Action, EagerSnapshot};
use deltalake::operations::write::WriterStatsConfig;
use deltalake::protocol::{DeltaOperation, SaveMode};
use futures::{StreamExt, TryStreamExt};

use bowman_connector::{ConnectorError, ErrorKind, Replace};

use crate::delta_error;

/// Cast a deltalake scan to Bowman's plain column types.
pub(crate) fn cast_plan(plan: Arc<dyn ExecutionPlan>, schema: &SchemaRef, projection: Option<&[usize]>) -> Result<Arc<dyn ExecutionPlan>> {
    let wanted: Vec<usize> = match projection {
        Some(p) => p.to_vec(),
        None => (0..schema.fields().len()).collect(),
    };
    let input = plan.schema();
    if input.fields().len() != wanted.len()
        || wanted.iter().enumerate().all(|(i, &w)| input.field(i).data_type() == schema.field(w).data_type())
    {
        return Ok(plan);
    }
    let mut exprs = Vec::with_capacity(wanted.len());
    for (i, &w) in wanted.iter().enumerate() {
        let target = schema.field(w);
        let column = Arc::new(Column::new(input.field(i).name(), i));
        let expr = if input.field(i).data_type() == target.data_type() {
            column as _
        } else {
            cast_expr(column, &input, target.data_type().clone())?
        };
        exprs.push(ProjectionExpr { expr, alias: target.name().clone() });
    }
    Ok(Arc::new(ProjectionExec::try_new(exprs, plan)?))
}

pub(crate) fn write_plan(
    name: &str,
    table: &DeltaTable,
    input: Arc<dyn ExecutionPlan>,
    replace: Replace,
    target_file_size: Option<NonZeroU64>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let snapshot = table.snapshot().map_err(|e| delta_error(name, e))?.snapshot().clone();
    let mapping = snapshot.metadata().configuration().get("delta.columnMapping.mode").cloned();
    if mapping.as_deref().is_some_and(|m| m != "none") {
        return Err(ConnectorError::new(
            ErrorKind::Unsupported,
            format!("writing to delta table {name}: its columns are mapped (delta.columnMapping.mode = {})", mapping.unwrap_or_default()),
        )
        .into());
    }
    let schema = snapshot.arrow_schema();
    let sink = DeltaSink {
        name: name.to_string(),
        table: table.clone(),
        snapshot,
        schema,
        replace,
        target_file_size,
        metrics: ExecutionPlanMetricsSet::new(),
    };
    Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
}

struct DeltaSink {
    name: String,
    table: DeltaTable,
    /// The version the statement planned against: the commit is checked against it, so a
    /// concurrent write to the same partitions makes this one fail rather than be lost.
    snapshot: EagerSnapshot,
    schema: SchemaRef,
    replace: Replace,
    target_file_size: Option<NonZeroU64>,
    metrics: ExecutionPlanMetricsSet,
}

impl fmt::Debug for DeltaSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeltaSink").field("table", &self.name).field("replace", &self.replace).finish()
    }
}

impl DisplayAs for DeltaSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "DeltaSink: table={}, replace={}", self.name, self.replace.describe())
    }
}

/// Align a batch with the table's columns (by position: Bowman's INSERT planning already
/// ordered and named them) and types.
fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.num_columns() != schema.fields().len() {
        return Err(DataFusionError::Plan(format!(
            "the query produces {} columns but the delta table has {}",
            batch.num_columns(),
            schema.fields().len()
        )));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c.clone()) } else { cast(c, f.data_type()) })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    // Nullability follows the table; a NULL in a NOT NULL column fails here, before any commit.
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// A SQL literal for a partition value in a commit's predicate (read back by deltalake's
/// conflict checker, displayed by `DESCRIBE HISTORY` elsewhere).
fn predicate_term(column: &str, value: &Option<String>) -> String {
    let ident = format!("\"{}\"", column.replace('"', "\"\""));
    match value {
        None => format!("{ident} IS NULL"),
        Some(v) => format!("{ident} = '{}'", v.replace('\'', "''")),
    }
}

fn conjunction(values: &BTreeMap<String, Option<String>>) -> String {
    values.iter().map(|(c, v)| predicate_term(c, v)).collect::<Vec<_>>().join(" AND ")
}

#[async_trait]
impl DataSink for DeltaSink {
    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(&self, mut data: SendableRecordBatchStream, _context: &Arc<TaskContext>) -> Result<u64> {
        let name = &self.name;
        let log_store = self.table.log_store();
        let operation_id = uuid::Uuid::new_v4();
        let partition_columns = self.snapshot.metadata().partition_columns().to_vec();
        let stats = WriterStatsConfig::from_config(self.snapshot.table_configuration());
        let target_size = self
            .target_file_size
            .or_else(|| NonZeroU64::new(self.snapshot.config().target_file_size().get()));
        let config = WriterConfig::new(
            self.schema.clone(),
            partition_columns.clone(),
            None,
            target_size,
            None,
            stats.num_indexed_cols,
            stats.stats_columns,
        );
        let mut writer = DeltaWriter::new(log_store.object_store(Some(operation_id)), config);
        let rows_metric = MetricBuilder::new(&self.metrics).counter("rows_written", 0);
        let mut rows: u64 = 0;
        let written: Result<()> = async {
            while let Some(batch) = data.next().await {
                let batch = conform(batch?, &self.schema)?;
                rows += batch.num_rows() as u64;
                rows_metric.add(batch.num_rows());
                writer.write(&batch).await.map_err(|e| delta_error(name, e))?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = written {
            // Files written so far are in no commit: readers never see them.
            let _ = writer.abort().await;
            return Err(e);
        }
        let adds = writer.close().await.map_err(|e| delta_error(name, e))?;

        let produced: BTreeSet<BTreeMap<String, Option<String>>> =
            adds.iter().map(|a| a.partition_values.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).collect();
        let exact_map = |pairs: &Vec<(String, String)>| -> BTreeMap<String, Option<String>> {
            pairs.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect()
        };
        // Which live files this commit removes, and the predicate that says so.
        let (remove_if, predicate): (Box<dyn Fn(&HashMap<String, Option<String>>) -> bool + Send + Sync>, Option<String>) =
            match &self.replace {
                Replace::Nothing => (Box::new(|_| false), None),
                Replace::All => (Box::new(|_| true), None),
                Replace::Matching(pairs) => {
                    let want = exact_map(pairs);
                    let text = conjunction(&want);
                    (Box::new(move |p| want.iter().all(|(k, v)| p.get(k) == Some(v))), Some(text))
                }
                // OPTIMIZE of a Delta table is deltalake's compaction, never a write; a rewrite
                // replaces what it produced, and deltalake's conflict check guards it.
                Replace::Produced { .. } | Replace::Rewrite => {
                    let exact = match &self.replace {
                        Replace::Produced { exact } => exact.as_ref(),
                        _ => None,
                    };
                    let mut parts = produced.clone();
                    if let Some(pairs) = exact {
                        parts.insert(exact_map(pairs));
                    }
                    if parts.is_empty() {
                        (Box::new(|_| false), None)
                    } else {
                        let text = parts.iter().map(|p| format!("({})", conjunction(p))).collect::<Vec<_>>().join(" OR ");
                        (
                            Box::new(move |p| {
                                let key: BTreeMap<String, Option<String>> = p.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                                parts.contains(&key)
                            }),
                            Some(text),
                        )
                    }
                }
            };
        let mut actions: Vec<Action> = adds.into_iter().map(Action::Add).collect();
        if self.replace != Replace::Nothing {
            let removes: Vec<Action> = self
                .snapshot
                .file_views(&log_store, None)
                .try_filter_map(|f| {
                    let hit = remove_if(&f.partition_values_map());
                    async move { Ok(hit.then(|| Action::Remove(f.remove_action(true)))) }
                })
                .try_collect()
                .await
                .map_err(|e| delta_error(name, e))?;
            actions.extend(removes);
        }
        if actions.is_empty() {
            // Nothing written, nothing replaced: no new version.
            return Ok(0);
        }
        let operation = DeltaOperation::Write {
            mode: if self.replace == Replace::Nothing { SaveMode::Append } else { SaveMode::Overwrite },
            partition_by: (!partition_columns.is_empty()).then_some(partition_columns),
            predicate,
        };
        let commit = CommitBuilder::default()
            .with_actions(actions)
            .with_operation_id(operation_id)
            .build(Some(&self.snapshot), log_store.clone(), operation)
            .await
            .map_err(|e| delta_error(name, e))?;
        tracing::info!(table = %name, version = commit.version(), rows, "delta commit");
        Ok(rows)
    }
}
