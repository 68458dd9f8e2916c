//! The leaf that runs SQL in a remote database: one statement per output partition.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use futures::StreamExt;

use crate::RemoteDatabase;

/// Runs `sql[i]` for partition `i` and streams the rows, decoded into `schema` by position.
/// EXPLAIN shows the statements exactly as sent.
#[derive(Debug)]
pub struct RemoteScanExec {
    db: Arc<dyn RemoteDatabase>,
    sql: Vec<String>,
    schema: SchemaRef,
    /// The Bowman table (or `join of a, b`) the rows come from, for messages.
    table: String,
    props: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl RemoteScanExec {
    pub fn new(db: Arc<dyn RemoteDatabase>, sql: Vec<String>, schema: SchemaRef, table: String) -> Self {
        let props = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(sql.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        RemoteScanExec { db, sql, schema, table, props, metrics: ExecutionPlanMetricsSet::new() }
    }

    pub fn sql(&self) -> &[String] {
        &self.sql
    }
}

impl DisplayAs for RemoteScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "RemoteScanExec: {} {}", self.db.kind(), self.db.describe())?;
        if self.sql.len() == 1 {
            write!(f, " sql={}", self.sql[0])
        } else {
            write!(f, " partitions={}", self.sql.len())?;
            for (i, s) in self.sql.iter().enumerate() {
                write!(f, " sql[{i}]={s}")?;
            }
            Ok(())
        }
    }
}

impl ExecutionPlan for RemoteScanExec {
    fn name(&self) -> &str {
        "RemoteScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal("RemoteScanExec has no children".into()))
        }
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let sql = self
            .sql
            .get(partition)
            .ok_or_else(|| DataFusionError::Internal(format!("RemoteScanExec has no partition {partition}")))?;
        if self.schema.fields().is_empty() {
            // `SELECT 1 FROM ...` for a row count: keep the rows, drop the column.
            let one = Arc::new(Schema::new(vec![Field::new("one", DataType::Int64, true)]));
            let schema = self.schema.clone();
            let stream = watched(self.db.query(sql.clone(), one, self.table.clone())?, self.db.clone(), self.table.clone());
            let counted = stream.map(move |b| {
                let b = b?;
                Ok(RecordBatch::try_new_with_options(schema.clone(), vec![], &RecordBatchOptions::new().with_row_count(Some(b.num_rows())))?)
            });
            return Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), counted)));
        }
        let stream = watched(self.db.query(sql.clone(), self.schema.clone(), self.table.clone())?, self.db.clone(), self.table.clone());
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let counted = stream.map(move |b| {
            if let Ok(batch) = &b {
                baseline.record_output(batch.num_rows());
            }
            b
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), counted)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// `stream`, ended with 08006 when the database stops answering: whenever the next batch has
/// not come within the database's liveness interval, a new connection checks that the server
/// still answers (a long-running statement on a live server just goes on waiting). A stopped
/// or frozen server, or a network path that dropped without closing the connection, would
/// otherwise hold the statement for ever: TCP keeps an idle connection open, and the kernel
/// still acknowledges a stopped process's packets.
pub fn watched(stream: SendableRecordBatchStream, db: Arc<dyn RemoteDatabase>, table: String) -> SendableRecordBatchStream {
    let Some(interval) = db.liveness_interval() else { return stream };
    let schema = stream.schema();
    let out = futures::stream::unfold(Some(stream), move |state| {
        let db = db.clone();
        let table = table.clone();
        async move {
            let mut stream = state?;
            let check = async {
                loop {
                    tokio::time::sleep(interval).await;
                    if let Err(e) = db.ping().await {
                        return e;
                    }
                }
            };
            tokio::select! {
                next = stream.next() => next.map(|item| (item, Some(stream))),
                e = check => {
                    tracing::warn!(db = %db.describe(), %table, error = %e, "remote database stopped answering");
                    Some((Err(e), None))
                }
            }
        }
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, out))
}
