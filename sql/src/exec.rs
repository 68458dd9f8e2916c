//! Running physical plans so that one statement never holds a worker thread for long.
//!
//! DataFusion's operators only return to the scheduler when their input does. A cross join or a
//! nested-loop join produces batch after batch from memory, so a `count(*)` over it polls its
//! input in a loop that never sees `Pending`: the thread is held until the whole join is done,
//! other sessions, timers and cancel requests on that thread wait, and dropping the statement
//! (a cancel, `statement_timeout`) cannot stop it, because a task is only dropped when it yields
//! (apache/datafusion#19358). DataFusion's own `EnsureCooperative` rule wraps only leaves and
//! exchanges, which is not enough once a join generates rows without reading any.
//!
//! [`cooperative`] therefore puts a [`YieldExec`] on every edge of a plan before it runs. Each
//! one spends the task's Tokio budget per batch (so a task yields after a bounded number of
//! batches, as Tokio's own resources do) and also yields when its input has kept it busy for
//! longer than [`SLICE`] (one batch of a nested-loop join can take far longer than the budget
//! assumes). A yield returns `Pending` straight up the plan, so the task goes back to the
//! scheduler, and a statement that was dropped meanwhile stops there.
//!
//! The wrappers are added at execution time, after optimization, so EXPLAIN shows the plan as
//! DataFusion made it, and they delegate their identity (`downcast_delegate`) and metrics to the
//! operator they wrap.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, RecordBatchStream,
};
use futures::Stream;

/// How long one operator's input may keep a task busy before the task yields.
pub(crate) const SLICE: Duration = Duration::from_millis(20);

/// `plan` with a [`YieldExec`] above every operator but the root.
pub(crate) fn cooperative(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    let children = plan.children();
    // EXPLAIN ANALYZE prints the plan it ran, wrappers included (each would show as a copy of
    // the operator it wraps), so the plan under it runs as DataFusion made it.
    if children.is_empty() || plan.name() == "AnalyzeExec" {
        return Ok(plan);
    }
    let mut wrapped = Vec::with_capacity(children.len());
    for child in children {
        let inner = cooperative(child.clone())?;
        wrapped.push(Arc::new(YieldExec::new(inner)) as Arc<dyn ExecutionPlan>);
    }
    // The wrappers keep their input's properties, so the parent's stay valid.
    #[allow(deprecated)]
    plan.with_new_children_and_same_properties(wrapped)
}

/// Passes its input's batches through, yielding to the scheduler regularly.
#[derive(Debug)]
pub(crate) struct YieldExec {
    input: Arc<dyn ExecutionPlan>,
}

impl YieldExec {
    fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        YieldExec { input }
    }
}

impl DisplayAs for YieldExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Shown (by EXPLAIN ANALYZE) as the operator it wraps would be: it adds nothing a user
        // tunes.
        self.input.fmt_as(t, f)
    }
}

impl ExecutionPlan for YieldExec {
    fn name(&self) -> &str {
        self.input.name()
    }

    fn downcast_delegate(&self) -> Option<&dyn ExecutionPlan> {
        Some(self.input.as_ref())
    }

    fn schema(&self) -> SchemaRef {
        self.input.schema()
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(datafusion::error::DataFusionError::Internal(format!(
                "a yield point wraps one input, got {}",
                children.len()
            )));
        }
        Ok(Arc::new(YieldExec::new(children.swap_remove(0))))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let inner = self.input.execute(partition, context)?;
        Ok(Box::pin(YieldStream { inner, busy_since: None, done: false }))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        self.input.metrics()
    }
}

struct YieldStream {
    inner: SendableRecordBatchStream,
    /// When the input last started answering without waiting.
    busy_since: Option<Instant>,
    /// The input has ended (it is not polled again).
    done: bool,
}

impl Stream for YieldStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.busy_since.is_some_and(|t| t.elapsed() >= SLICE) {
            self.busy_since = None;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let budget = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let item = self.inner.as_mut().poll_next(cx);
        match &item {
            Poll::Ready(end) => {
                self.done = end.is_none();
                budget.made_progress();
                if self.busy_since.is_none() {
                    self.busy_since = Some(Instant::now());
                }
            }
            Poll::Pending => self.busy_since = None,
        }
        item
    }
}

impl RecordBatchStream for YieldStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

/// Execute `plan` (all partitions merged) with yield points on every edge.
pub(crate) fn execute_stream(plan: Arc<dyn ExecutionPlan>, task: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
    datafusion::physical_plan::execute_stream(cooperative(plan)?, task)
}

/// Run `plan` to completion with yield points on every edge.
pub(crate) async fn collect(plan: Arc<dyn ExecutionPlan>, task: Arc<TaskContext>) -> Result<Vec<RecordBatch>> {
    datafusion::physical_plan::collect(cooperative(plan)?, task).await
}

/// A DataFrame's rows, with yield points on every edge of its plan.
pub(crate) async fn dataframe_stream(df: datafusion::dataframe::DataFrame) -> Result<SendableRecordBatchStream> {
    let task = Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await?;
    execute_stream(plan, task)
}
