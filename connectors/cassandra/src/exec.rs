//! The scan plan: scan units (token ranges of the live ring, or direct partition reads) run
//! `concurrency` at a time, each paged, every page decoded straight into Arrow builders.

use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use futures::{StreamExt, TryStreamExt};
use scylla::client::session::Session as CqlSession;
use scylla::cluster::metadata::ColumnType;
use scylla::deserialize::row::ColumnIterator;
use scylla::errors::ExecutionError;
use scylla::response::PagingState;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlValue;

use crate::options::{CassandraOptions, quote_ident};
use crate::pushdown::{ScanKind, ScanPlan};
use crate::types::Decoder;
use crate::{CassandraTable, exec_error};

#[derive(Debug, Clone)]
enum Unit {
    /// token(pk) > lo AND token(pk) <= hi
    Range(i64, i64),
    /// bound values of one direct partition read (partition key, then clustering restrictions)
    Partition(Vec<CqlValue>),
}

pub struct CassandraScanExec {
    name: String,
    opts: CassandraOptions,
    session: Arc<CqlSession>,
    cql: String,
    units: Vec<Unit>,
    columns: Vec<(String, ColumnType<'static>)>,
    read_schema: SchemaRef,
    out_schema: SchemaRef,
    props: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    partition_reads: bool,
}

impl fmt::Debug for CassandraScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CassandraScanExec({})", self.cql)
    }
}

/// The token ranges of the driver's live ring: (t[i-1], t[i]], from the smallest token to the
/// largest, and the range past the largest as (t_last, MAX] plus (MIN, t_first].
fn ring_ranges(session: &CqlSession) -> Vec<(i64, i64)> {
    let state = session.get_cluster_state();
    let mut tokens: Vec<i64> = state.replica_locator().ring().iter().map(|(t, _)| t.value()).collect();
    tokens.sort_unstable();
    tokens.dedup();
    tokens.retain(|t| *t != i64::MIN);
    let mut bounds = vec![i64::MIN];
    bounds.extend(tokens);
    if *bounds.last().unwrap() != i64::MAX {
        bounds.push(i64::MAX);
    }
    bounds.windows(2).map(|w| (w[0], w[1])).collect()
}

impl CassandraScanExec {
    pub fn new(
        t: &CassandraTable,
        plan: ScanPlan,
        columns: Vec<(String, ColumnType<'static>)>,
        read_schema: SchemaRef,
        out_schema: SchemaRef,
        limit: Option<usize>,
    ) -> Result<Self> {
        let select: Vec<String> = columns.iter().map(|(n, _)| quote_ident(n)).collect();
        let mut cql = format!("SELECT {} FROM {}", select.join(", "), t.qualified());
        let (units, partition_reads) = match &plan.kind {
            ScanKind::Partitions { keys } => {
                let mut conds: Vec<String> = t.partition_key.iter().map(|p| format!("{} = ?", quote_ident(p))).collect();
                conds.extend(plan.clustering.iter().map(|(c, op)| format!("{c} {op} ?")));
                cql.push_str(&format!(" WHERE {}", conds.join(" AND ")));
                let units = keys.iter().map(|k| Unit::Partition([k.clone(), plan.clustering_values.clone()].concat())).collect();
                (units, true)
            }
            ScanKind::TokenRanges => {
                let pk: Vec<String> = t.partition_key.iter().map(|p| quote_ident(p)).collect();
                let pk = pk.join(", ");
                cql.push_str(&format!(" WHERE token({pk}) > ? AND token({pk}) <= ?"));
                (ring_ranges(&t.session).into_iter().map(|(a, b)| Unit::Range(a, b)).collect(), false)
            }
        };
        if let Some(n) = limit {
            cql.push_str(&format!(" LIMIT {}", n.clamp(1, i32::MAX as usize)));
        }
        let props = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(out_schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(CassandraScanExec {
            name: t.name.clone(),
            opts: t.opts.clone(),
            session: t.session.clone(),
            cql,
            units,
            columns,
            read_schema,
            out_schema,
            props,
            metrics: ExecutionPlanMetricsSet::new(),
            partition_reads,
        })
    }
}

fn show(v: &CqlValue) -> String {
    match v {
        CqlValue::Text(s) | CqlValue::Ascii(s) => format!("'{}'", s.replace('\'', "''")),
        CqlValue::Int(x) => x.to_string(),
        CqlValue::BigInt(x) => x.to_string(),
        CqlValue::SmallInt(x) => x.to_string(),
        CqlValue::TinyInt(x) => x.to_string(),
        CqlValue::Uuid(u) => u.to_string(),
        CqlValue::Boolean(b) => b.to_string(),
        CqlValue::Double(x) => x.to_string(),
        CqlValue::Float(x) => x.to_string(),
        other => format!("{other:?}"),
    }
}

impl DisplayAs for CassandraScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CassandraScanExec: cql={}", self.cql)?;
        if self.partition_reads {
            write!(f, " partition_reads={}", self.units.len())?;
            let shown: Vec<String> = self
                .units
                .iter()
                .take(10)
                .map(|u| match u {
                    Unit::Partition(v) => format!("({})", v.iter().map(show).collect::<Vec<_>>().join(", ")),
                    Unit::Range(a, b) => format!("({a}, {b}]"),
                })
                .collect();
            write!(f, " values=[{}{}]", shown.join(", "), if self.units.len() > 10 { ", ..." } else { "" })?;
        } else {
            write!(f, " token_ranges={}", self.units.len())?;
        }
        write!(f, " concurrency={} page_size={} consistency={:?}", self.opts.concurrency, self.opts.page_size, self.opts.consistency)
    }
}

struct Counters {
    partition_reads: Count,
    token_ranges: Count,
    pages: Count,
}

impl ExecutionPlan for CassandraScanExec {
    fn name(&self) -> &str {
        "CassandraScanExec"
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
        if children.is_empty() { Ok(self) } else { Err(DataFusionError::Internal("CassandraScanExec has no children".into())) }
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!("CassandraScanExec has no partition {partition}")));
        }
        let counters = Arc::new(Counters {
            partition_reads: MetricBuilder::new(&self.metrics).global_counter("partition_reads"),
            token_ranges: MetricBuilder::new(&self.metrics).global_counter("token_ranges"),
            pages: MetricBuilder::new(&self.metrics).global_counter("pages"),
        });
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let session = self.session.clone();
        let cql = self.cql.clone();
        let opts = self.opts.clone();
        let name = self.name.clone();
        let units = self.units.clone();
        let ctx = Arc::new(PageContext {
            columns: self.columns.clone(),
            read_schema: self.read_schema.clone(),
            out_schema: self.out_schema.clone(),
        });
        let concurrency = self.opts.concurrency;
        let prepared = async move {
            let mut p = session.prepare(cql).await.map_err(|e| exec_error(ExecutionError::PrepareError(e), &opts, &name))?;
            p.set_page_size(opts.page_size);
            p.set_consistency(opts.consistency);
            let p = Arc::new(p);
            let s = futures::stream::iter(units)
                .map(move |u| unit_stream(session.clone(), p.clone(), u, ctx.clone(), counters.clone(), opts.clone(), name.clone()))
                .flatten_unordered(concurrency);
            Ok::<_, DataFusionError>(s)
        };
        let stream = futures::stream::once(prepared).try_flatten().inspect_ok(move |b: &RecordBatch| baseline.record_output(b.num_rows()));
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.out_schema.clone(), stream)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

struct PageContext {
    columns: Vec<(String, ColumnType<'static>)>,
    read_schema: SchemaRef,
    out_schema: SchemaRef,
}

fn unit_stream(
    session: Arc<CqlSession>,
    prepared: Arc<PreparedStatement>,
    unit: Unit,
    ctx: Arc<PageContext>,
    counters: Arc<Counters>,
    opts: CassandraOptions,
    name: String,
) -> futures::stream::BoxStream<'static, Result<RecordBatch>> {
    match &unit {
        Unit::Range(..) => counters.token_ranges.add(1),
        Unit::Partition(_) => counters.partition_reads.add(1),
    }
    let values: Vec<CqlValue> = match unit {
        Unit::Range(a, b) => vec![CqlValue::BigInt(a), CqlValue::BigInt(b)],
        Unit::Partition(v) => v,
    };
    let values = Arc::new(values);
    futures::stream::unfold(Some(PagingState::start()), move |state| {
        let session = session.clone();
        let prepared = prepared.clone();
        let values = values.clone();
        let ctx = ctx.clone();
        let counters = counters.clone();
        let opts = opts.clone();
        let name = name.clone();
        async move {
            let ps = state?;
            let page = session.execute_single_page(&prepared, values.as_slice(), ps).await;
            counters.pages.add(1);
            match page {
                Err(e) => Some((Err(exec_error(e, &opts, &name)), None)),
                Ok((result, paging)) => {
                    let next = match paging.into_paging_control_flow() {
                        ControlFlow::Continue(s) => Some(s),
                        ControlFlow::Break(()) => None,
                    };
                    match decode(result, &ctx, &name) {
                        Ok(b) => Some((Ok(b), next)),
                        Err(e) => Some((Err(e), None)),
                    }
                }
            }
        }
    })
    .boxed()
}

fn decode(result: scylla::response::query_result::QueryResult, ctx: &PageContext, name: &str) -> Result<RecordBatch> {
    let rows = result.into_rows_result().map_err(|e| DataFusionError::Execution(format!("{name}: a scan page has no rows: {e}")))?;
    let n = rows.rows_num();
    if ctx.out_schema.fields().is_empty() {
        return Ok(RecordBatch::try_new_with_options(ctx.out_schema.clone(), vec![], &RecordBatchOptions::new().with_row_count(Some(n)))?);
    }
    let mut decoders = ctx
        .columns
        .iter()
        .zip(ctx.read_schema.fields().iter())
        .map(|((_, ct), f)| Decoder::new(f.data_type(), ct, n))
        .collect::<Result<Vec<_>, _>>()?;
    let bad = |e: &dyn fmt::Display| DataFusionError::Execution(format!("{name}: cannot read a Cassandra row: {e}"));
    for row in rows.rows::<ColumnIterator>().map_err(|e| bad(&e))? {
        let row = row.map_err(|e| bad(&e))?;
        for (i, col) in row.enumerate() {
            let col = col.map_err(|e| bad(&e))?;
            let d = decoders.get_mut(i).ok_or_else(|| bad(&"more columns than selected"))?;
            d.append(col.slice.map(|s| s.as_slice())).map_err(|e| DataFusionError::Execution(format!("{name}: column {}: {e}", ctx.columns[i].0)))?;
        }
    }
    let arrays = decoders.iter_mut().map(|d| d.finish()).collect();
    Ok(RecordBatch::try_new(ctx.out_schema.clone(), arrays)?)
}
