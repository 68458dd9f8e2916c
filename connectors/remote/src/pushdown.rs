//! Sending whole subplans (joins, aggregates, sorts) to the remote database that holds every
//! table under them.
//!
//! Bowman evaluated `datafusion-federation` (0.5.8) for this and took its approach (find the
//! largest subtrees whose scans share one remote database, print them back to SQL with
//! DataFusion's unparser) but not the crate: it pushes any expression, so a Bowman or Spark
//! function such as `nvl` or `get_json_object` would reach PostgreSQL as an unknown function; it
//! errors on `IN (subquery)` anywhere in a plan; and its single-stream executor cannot keep
//! Spark's partitioned parallel reads. Here each expression is checked against what the remote
//! dialect supports, subtrees the unparser cannot print stay local, and plain scans keep going
//! through [`RemoteTable::scan`](crate::RemoteTable) (projection, filters, LIMIT, partitions).
//!
//! The rule runs after DataFusion's own optimizer rules, so filters and limits have already
//! been pushed as far down as they go.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, DFSchemaRef, ExprSchema, NullEquality, ScalarValue, TableReference};
use datafusion::datasource::source_as_provider;
use datafusion::error::Result;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::{
    Distinct, Expr, Extension, Filter, LogicalPlan, LogicalPlanBuilder, Operator, Projection, SubqueryAlias, TableScan, TableScanBuilder,
    SortExpr, UserDefinedLogicalNode, UserDefinedLogicalNodeCore, utils::conjunction,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use datafusion::sql::unparser::Unparser;

use crate::exec::RemoteScanExec;
use crate::table::RemoteTable;
use crate::RemoteDatabase;

/// The remote table behind a scan, if it is one.
fn remote_table(scan: &TableScan) -> Option<Arc<dyn TableProvider>> {
    let provider = source_as_provider(&scan.source).ok()?;
    (provider.as_ref() as &dyn Any).downcast_ref::<RemoteTable>()?;
    Some(provider)
}

fn as_remote(p: &Arc<dyn TableProvider>) -> &RemoteTable {
    (p.as_ref() as &dyn Any).downcast_ref::<RemoteTable>().expect("checked by remote_table")
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Whether `expr` reads a string column of `schema`.
fn reads_strings(expr: &Expr, schema: &DFSchema) -> bool {
    expr.column_refs().iter().any(|c| schema.field_from_column(c).is_ok_and(|f| is_string(f.data_type())))
}

/// Whether an expression orders strings (`<`, `BETWEEN`, ...): collations differ between
/// databases and from Bowman's byte order, so such comparisons are evaluated here.
fn compares_string_order(expr: &Expr, schema: &DFSchema) -> bool {
    let mut found = false;
    let _ = expr.apply(|e| {
        let ordered = match e {
            Expr::BinaryExpr(b) if matches!(b.op, Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq) => {
                reads_strings(&b.left, schema) || reads_strings(&b.right, schema)
            }
            Expr::Between(b) => reads_strings(&b.expr, schema),
            _ => false,
        };
        if ordered {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// How a filter on a remote table can be sent: exactly, as a pre-filter Bowman checks again,
/// or not at all.
pub fn filter_pushdown(expr: &Expr, schema: &DFSchema, db: &dyn RemoteDatabase) -> datafusion::logical_expr::TableProviderFilterPushDown {
    use datafusion::logical_expr::TableProviderFilterPushDown as P;
    if !expr_pushable(expr, db) || compares_string_order(expr, schema) {
        P::Unsupported
    } else if !db.exact_string_equality() && reads_strings(expr, schema) {
        P::Inexact
    } else {
        P::Exact
    }
}

/// Whether `expr` means the same in the remote database and can be printed for it.
pub fn expr_pushable(expr: &Expr, db: &dyn RemoteDatabase) -> bool {
    let mut ok = true;
    let _ = expr.apply(|e| {
        let this = match e {
            Expr::Column(_) | Expr::Alias(_) | Expr::Not(_) | Expr::Negative(_) => true,
            Expr::IsNull(_) | Expr::IsNotNull(_) | Expr::IsTrue(_) | Expr::IsFalse(_) => true,
            Expr::IsNotTrue(_) | Expr::IsNotFalse(_) => true,
            Expr::Between(_) | Expr::InList(_) | Expr::Case(_) => true,
            Expr::Literal(v, _) => {
                literal_pushable(v)
                    && match v {
                        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
                            db.string_literal_pushable(s)
                        }
                        _ => true,
                    }
            }
            Expr::BinaryExpr(b) => match b.op {
                Operator::Eq
                | Operator::NotEq
                | Operator::Lt
                | Operator::LtEq
                | Operator::Gt
                | Operator::GtEq
                | Operator::Plus
                | Operator::Minus
                | Operator::Multiply
                | Operator::Divide
                | Operator::Modulo
                | Operator::And
                | Operator::Or => true,
                Operator::StringConcat => db.concat_operator(),
                _ => false,
            },
            // ILIKE is PostgreSQL's; LIKE with an explicit escape is printed portably.
            Expr::Like(l) => !l.case_insensitive || db.kind() != "mysql",
            Expr::Cast(c) => matches!(
                c.field.data_type(),
                DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::Float32 | DataType::Float64 | DataType::Date32
            ) || (matches!(c.field.data_type(), DataType::Decimal128(..)) && db.kind() != "mysql"),
            Expr::ScalarFunction(f) => db.supports_function(f.name()),
            Expr::AggregateFunction(a) => {
                matches!(a.func.name(), "count" | "sum" | "min" | "max" | "avg")
                    && a.params.filter.is_none()
                    && a.params.order_by.is_empty()
                    && a.params.null_treatment.is_none()
            }
            _ => false,
        };
        if this {
            Ok(TreeNodeRecursion::Continue)
        } else {
            ok = false;
            Ok(TreeNodeRecursion::Stop)
        }
    });
    ok
}

fn literal_pushable(v: &ScalarValue) -> bool {
    use ScalarValue::*;
    match v {
        Null | Boolean(_) | Int8(_) | Int16(_) | Int32(_) | Int64(_) | UInt8(_) | UInt16(_) | UInt32(_) | UInt64(_) => true,
        Float32(Some(f)) => f.is_finite(),
        Float64(Some(f)) => f.is_finite(),
        Utf8(_) | LargeUtf8(_) | Utf8View(_) | Date32(_) | Decimal128(..) => true,
        TimestampMicrosecond(_, None) | TimestampMillisecond(_, None) | TimestampSecond(_, None) => true,
        _ => false,
    }
}

/// Whether a plan node (not its inputs) can run remotely.
fn node_pushable(plan: &LogicalPlan, db: &dyn RemoteDatabase) -> bool {
    let input_schemas: Vec<&DFSchemaRef> = plan.inputs().iter().map(|i| i.schema()).collect();
    let merged = match input_schemas.as_slice() {
        [one] => (**one).as_ref().clone(),
        many => {
            let mut m = DFSchema::empty();
            for s in many {
                m.merge(s);
            }
            m
        }
    };
    // Comparisons that order strings, and (where equality is not exact) anything that decides
    // by a string, stay here.
    let deciding: Vec<Expr> = match plan {
        LogicalPlan::Filter(f) => vec![f.predicate.clone()],
        LogicalPlan::Sort(s) => s.expr.iter().map(|s| s.expr.clone()).collect(),
        LogicalPlan::Aggregate(a) => a.group_expr.clone(),
        LogicalPlan::Join(j) => j.on.iter().flat_map(|(l, r)| [l.clone(), r.clone()]).chain(j.filter.clone()).collect(),
        _ => vec![],
    };
    for e in &deciding {
        if compares_string_order(e, &merged) || (!db.exact_string_equality() && reads_strings(e, &merged)) {
            return false;
        }
        if matches!(plan, LogicalPlan::Sort(_)) && reads_strings(e, &merged) {
            return false;
        }
    }
    if let LogicalPlan::Distinct(_) = plan {
        if !db.exact_string_equality() && merged.fields().iter().any(|f| is_string(f.data_type())) {
            return false;
        }
    }
    match plan {
        LogicalPlan::Projection(p) => p.expr.iter().all(|e| expr_pushable(e, db)),
        LogicalPlan::Filter(f) => expr_pushable(&f.predicate, db),
        LogicalPlan::Limit(l) => {
            let lit = |e: &Option<Box<Expr>>| e.as_deref().is_none_or(|e| matches!(e, Expr::Literal(..)));
            lit(&l.skip) && lit(&l.fetch)
        }
        LogicalPlan::Sort(s) => s.expr.iter().all(|s| expr_pushable(&s.expr, db)),
        LogicalPlan::Aggregate(a) => {
            a.group_expr.iter().all(|e| expr_pushable(e, db) && !matches!(e, Expr::GroupingSet(_)))
                && a.aggr_expr.iter().all(|e| expr_pushable(e, db))
        }
        LogicalPlan::Join(j) => {
            db.supports_join(j.join_type)
                && j.null_equality == NullEquality::NullEqualsNothing
                && j.on.iter().all(|(l, r)| expr_pushable(l, db) && expr_pushable(r, db))
                && j.filter.as_ref().is_none_or(|f| expr_pushable(f, db))
        }
        LogicalPlan::SubqueryAlias(_) => true,
        LogicalPlan::Distinct(Distinct::All(_)) => true,
        _ => false,
    }
}

/// Whether running a subtree remotely does more than [`RemoteTable::scan`] already does.
fn worth_pushing(plan: &LogicalPlan) -> bool {
    let mut worth = false;
    let _ = plan.apply(|p| {
        if matches!(
            p,
            LogicalPlan::Join(_) | LogicalPlan::Aggregate(_) | LogicalPlan::Sort(_) | LogicalPlan::Distinct(_)
        ) {
            worth = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    worth
}

fn has_remote_scan(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply(|p| {
        if let LogicalPlan::TableScan(s) = p {
            if remote_table(s).is_some() {
                found = true;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// The optimizer rule. Add it with `SessionState::add_optimizer_rule` (it must run last) and plan
/// its nodes with [`RemoteQueryPlanner`].
#[derive(Debug, Default)]
pub struct RemotePushdown;

impl OptimizerRule for RemotePushdown {
    fn name(&self) -> &str {
        "bowman_remote_pushdown"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        if !has_remote_scan(&plan) {
            return Ok(Transformed::no(plan));
        }
        let (plan, db) = visit(plan)?;
        let plan = match db {
            Some(db) if worth_pushing(&plan) => wrap(plan, db)?,
            _ => plan,
        };
        Ok(Transformed::yes(plan))
    }
}

/// Returns the plan (subtrees pushed where they end) and, when the whole of it can run in one
/// remote database, that database (the caller decides where to cut).
fn visit(plan: LogicalPlan) -> Result<(LogicalPlan, Option<Arc<dyn RemoteDatabase>>)> {
    match &plan {
        LogicalPlan::TableScan(scan) => {
            let db = remote_table(scan)
                .filter(|p| as_remote(p).joinable_reference().is_some())
                .map(|p| as_remote(&p).database().clone());
            return Ok((plan, db));
        }
        LogicalPlan::Extension(_) => return Ok((plan, None)),
        _ => {}
    }
    let inputs: Vec<LogicalPlan> = plan.inputs().into_iter().cloned().collect();
    if inputs.is_empty() {
        return Ok((plan, None));
    }
    let visited = inputs.into_iter().map(visit).collect::<Result<Vec<_>>>()?;
    let first = visited[0].1.as_ref().map(|d| d.identity());
    let same = first.is_some() && visited.iter().all(|(_, d)| d.as_ref().map(|d| d.identity()) == first);
    if same {
        let db = visited[0].1.clone().expect("checked");
        if node_pushable(&plan, db.as_ref()) {
            // Every input is untouched (nothing is cut inside a pushable subtree).
            return Ok((plan, Some(db)));
        }
    }
    let mut changed = false;
    let new_inputs = visited
        .into_iter()
        .map(|(p, db)| match db {
            Some(db) if worth_pushing(&p) => {
                changed = true;
                wrap(p, db)
            }
            _ => Ok(p),
        })
        .collect::<Result<Vec<_>>>()?;
    let plan = if changed || !plan.inputs().iter().zip(&new_inputs).all(|(a, b)| *a == b) {
        plan.with_new_exprs(plan.expressions(), new_inputs)?
    } else {
        plan
    };
    Ok((plan, None))
}

/// Replace a subtree that runs in `db` by one remote query; if it cannot be printed as SQL,
/// push its inputs instead and keep the node local.
fn wrap(plan: LogicalPlan, db: Arc<dyn RemoteDatabase>) -> Result<LogicalPlan> {
    match remote_sql(&plan, db.as_ref()) {
        Ok(sql) => {
            let tables = scanned_tables(&plan);
            Ok(LogicalPlan::Extension(Extension {
                node: Arc::new(RemoteQueryNode { schema: plan.schema().clone(), sql, db, tables }),
            }))
        }
        Err(e) => {
            tracing::debug!(error = %e, "subplan stays local: the unparser cannot print it");
            if matches!(plan, LogicalPlan::TableScan(_)) {
                return Ok(plan);
            }
            let inputs: Vec<LogicalPlan> = plan.inputs().into_iter().cloned().collect();
            let new_inputs = inputs
                .into_iter()
                .map(|p| if worth_pushing(&p) { wrap(p, db.clone()) } else { Ok(p) })
                .collect::<Result<Vec<_>>>()?;
            plan.with_new_exprs(plan.expressions(), new_inputs)
        }
    }
}

fn scanned_tables(plan: &LogicalPlan) -> String {
    let mut names = Vec::new();
    let _ = plan.apply(|p| {
        if let LogicalPlan::TableScan(s) = p {
            if let Some(t) = remote_table(s) {
                names.push(as_remote(&t).name().to_string());
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names.dedup();
    names.join(", ")
}

/// Print a subtree as one statement in the remote dialect: each remote scan becomes
/// `schema.table AS tN` (its pushed filters and limit as WHERE/LIMIT around it), column
/// references follow the aliases, and the outermost SELECT lists every output column in order.
pub fn remote_sql(plan: &LogicalPlan, db: &dyn RemoteDatabase) -> Result<String> {
    let mut counter = 0usize;
    let (renamed, _) = rename(plan.clone(), &mut counter)?;
    let renamed = if db.orders_nulls() { renamed } else { explicit_null_order(renamed)? };
    let top = with_column_list(renamed)?;
    let statement = Unparser::new(db.dialect().as_ref()).plan_to_sql(&top)?;
    Ok(statement.to_string())
}

/// For databases without NULLS FIRST/LAST whose NULLs sort first ascending (MySQL): put an
/// `x IS NULL` key before each sort key whose NULL placement differs from that default.
fn explicit_null_order(plan: LogicalPlan) -> Result<LogicalPlan> {
    Ok(plan
        .transform_up(|p| {
            Ok(match p {
                LogicalPlan::Sort(mut sort) => {
                    let mut keys = Vec::with_capacity(sort.expr.len() * 2);
                    for k in sort.expr {
                        if k.asc != k.nulls_first {
                            keys.push(SortExpr::new(Expr::IsNull(Box::new(k.expr.clone())), !k.nulls_first, false));
                        }
                        keys.push(k);
                    }
                    sort.expr = keys;
                    Transformed::yes(LogicalPlan::Sort(sort))
                }
                p => Transformed::no(p),
            })
        })?
        .data)
}

/// Make sure the statement names its output columns: below any ORDER BY / LIMIT at the top
/// (which do not change columns), a SELECT list of every column, unless one is already there.
/// Without it a join would print as `SELECT *`, which returns every remote column.
fn with_column_list(plan: LogicalPlan) -> Result<LogicalPlan> {
    match plan {
        LogicalPlan::Projection(_) => Ok(plan),
        LogicalPlan::Sort(_) | LogicalPlan::Limit(_) => {
            let input = plan.inputs()[0].clone();
            let exprs = plan.expressions();
            plan.with_new_exprs(exprs, vec![with_column_list(input)?])
        }
        p => {
            let exprs = p.schema().columns().into_iter().map(Expr::Column).collect::<Vec<_>>();
            Ok(LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(p))?))
        }
    }
}

type Renames = HashMap<TableReference, TableReference>;

fn requalify(expr: Expr, renames: &Renames) -> Result<Expr> {
    Ok(expr
        .transform(|e| {
            Ok(match e {
                Expr::Column(c) => match c.relation.as_ref().and_then(|r| renames.get(r)) {
                    Some(to) => Transformed::yes(Expr::Column(datafusion::common::Column::new(Some(to.clone()), c.name))),
                    None => Transformed::no(Expr::Column(c)),
                },
                e => Transformed::no(e),
            })
        })?
        .data)
}

/// A remote scan as `schema.table AS alias`, its pushed filters and limit around it.
fn rename_scan(scan: TableScan, alias: TableReference) -> Result<(LogicalPlan, Renames)> {
    let provider = remote_table(&scan).expect("only remote scans are pushed");
    let table = as_remote(&provider);
    let remote = table.joinable_reference().expect("only joinable tables are pushed");
    let renames: Renames = [(scan.table_name.clone(), alias.clone())].into();
    let bare = TableScanBuilder::new(remote, scan.source.clone()).with_projection(scan.projection.clone()).build()?;
    let mut out = LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(Arc::new(LogicalPlan::TableScan(bare)), alias)?);
    if let Some(predicate) = conjunction(scan.filters.iter().cloned()) {
        out = LogicalPlan::Filter(Filter::try_new(requalify(predicate, &renames)?, Arc::new(out))?);
    }
    if let Some(fetch) = scan.fetch {
        out = LogicalPlanBuilder::from(out).limit(0, Some(fetch))?.build()?;
    }
    Ok((out, renames))
}

fn rename(plan: LogicalPlan, counter: &mut usize) -> Result<(LogicalPlan, Renames)> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let alias = TableReference::bare(format!("t{counter}"));
            *counter += 1;
            rename_scan(scan, alias)
        }
        LogicalPlan::SubqueryAlias(sa) => {
            // The user's alias of a table names the table itself (`users AS a`); names below any
            // alias are not visible above it.
            let input = Arc::unwrap_or_clone(sa.input);
            let renamed = match input {
                LogicalPlan::TableScan(scan) => {
                    return Ok((rename_scan(scan, sa.alias)?.0, Renames::new()));
                }
                other => rename(other, counter)?.0,
            };
            Ok((LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(Arc::new(renamed), sa.alias)?), Renames::new()))
        }
        other => {
            let mut renames = Renames::new();
            let mut inputs = Vec::new();
            for i in other.inputs().into_iter().cloned() {
                let (p, r) = rename(i, counter)?;
                renames.extend(r);
                inputs.push(p);
            }
            let exprs = other.expressions().into_iter().map(|e| requalify(e, &renames)).collect::<Result<Vec<_>>>()?;
            Ok((other.with_new_exprs(exprs, inputs)?, renames))
        }
    }
}

/// A subtree replaced by one remote statement. Leaf node: its output is the subtree's.
#[derive(Debug, Clone)]
pub struct RemoteQueryNode {
    schema: DFSchemaRef,
    sql: String,
    db: Arc<dyn RemoteDatabase>,
    tables: String,
}

impl PartialEq for RemoteQueryNode {
    fn eq(&self, other: &Self) -> bool {
        self.sql == other.sql && self.db.identity() == other.db.identity() && self.schema == other.schema
    }
}

impl Eq for RemoteQueryNode {}

impl PartialOrd for RemoteQueryNode {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.sql.partial_cmp(&other.sql)
    }
}

impl Hash for RemoteQueryNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.sql.hash(state);
        self.db.identity().hash(state);
    }
}

impl UserDefinedLogicalNodeCore for RemoteQueryNode {
    fn name(&self) -> &str {
        "RemoteQuery"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "RemoteQuery: {} {} sql={}", self.db.kind(), self.db.describe(), self.sql)
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(self.clone())
    }
}

/// Plans [`RemoteQueryNode`]s as [`RemoteScanExec`]s.
#[derive(Debug, Default)]
pub struct RemotePlanner;

#[async_trait]
impl ExtensionPlanner for RemotePlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        _physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn Session,
        _ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(n) = node.as_any().downcast_ref::<RemoteQueryNode>() else {
            return Ok(None);
        };
        let schema = Arc::new(n.schema.as_arrow().clone());
        Ok(Some(Arc::new(RemoteScanExec::new(n.db.clone(), vec![n.sql.clone()], schema, n.tables.clone()))))
    }
}

/// DataFusion's planner plus [`RemotePlanner`].
#[derive(Debug, Default)]
pub struct RemoteQueryPlanner;

#[async_trait]
impl QueryPlanner for RemoteQueryPlanner {
    async fn create_physical_plan(&self, plan: &LogicalPlan, session: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(RemotePlanner)]).create_physical_plan(plan, session).await
    }
}
