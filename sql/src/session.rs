use std::sync::Arc;

use datafusion::arrow::array::{Array, UInt64Array};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::logical_expr::{DmlStatement, LogicalPlan, WriteOp};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast;
use futures::TryStreamExt;

use crate::engine::Engine;
use crate::error::{BowmanError, Result};
use crate::output::Output;
use crate::parser::{Statement, parse_sql};
use crate::settings::Settings;

/// One client's session: its current database, settings and DataFusion context.
///
/// Front ends create one per connection with [`Engine::new_session`] and run every statement
/// through [`Session::execute`] (simple protocol) or [`Session::prepare`] +
/// [`Session::execute_prepared`] (extended protocol).
pub struct Session {
    pub(crate) engine: Arc<Engine>,
    pub(crate) ctx: SessionContext,
    pub(crate) settings: Settings,
    /// Where long statements report progress (pgwire turns these into NOTICE messages).
    progress: Option<tokio::sync::mpsc::UnboundedSender<crate::output::Notice>>,
    /// Open cursors (DECLARE ... CURSOR), by name: each holds its query's running stream.
    cursors: std::collections::HashMap<String, Cursor>,
    /// `CREATE TEMPORARY VIEW ... USING` tables of this session.
    pub(crate) temp_views: bowman_catalog::provider::TempViews,
    /// The open `BEGIN` block and the writes it has made (each already committed).
    pub(crate) transaction: crate::transaction::TransactionBlock,
    /// The role statements run as (see [`Session::set_user`]); `None`: no user, no checks.
    pub(crate) user: Option<String>,
    /// Trusted without a password (a server without users): the superuser.
    pub(crate) trusted: bool,
    /// This session's place in the engine's statement registry.
    pub(crate) life: crate::registry::SessionLife,
}

/// A declared cursor: the query runs as rows are fetched, never buffered beyond one batch.
pub(crate) struct Cursor {
    schema: SchemaRef,
    /// In a mutex only so that sessions stay `Sync`; fetching has `&mut` access (`get_mut`).
    stream: std::sync::Mutex<datafusion::execution::SendableRecordBatchStream>,
    /// Rows of the last batch not fetched yet.
    pending: Option<datafusion::arrow::array::RecordBatch>,
    /// WITH HOLD: survives the end of the transaction that declared it.
    hold: bool,
}

/// A statement parsed (and, for queries and DML, planned with its `$n` placeholders) ahead of
/// execution.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    pub sql: String,
    /// `None` for an empty statement.
    pub statement: Option<Statement>,
    plan: Option<LogicalPlan>,
    /// Parameter types, inferred once at prepare time.
    params: Vec<Option<DataType>>,
    planned_against: PlanStamp,
    /// The result columns when they come from session state rather than a plan (FETCH).
    rows: Option<SchemaRef>,
}

/// What a prepared plan depends on in the catalog: the schema version, and the data version of
/// each catalog table it reads (and of the tables over the same location, whose files it
/// shows). A commit to any other table leaves the plan as it is.
#[derive(Debug, Clone, Default, PartialEq)]
struct PlanStamp {
    schema_version: i64,
    tables: Vec<(String, String, i64)>,
}

impl PlanStamp {
    fn of(plan: Option<&LogicalPlan>, catalog: &bowman_catalog::CatalogState) -> Self {
        use datafusion::common::tree_node::TreeNodeRecursion;
        let mut tables = Vec::new();
        if let Some(plan) = plan {
            let _ = plan.apply_with_subqueries(|node| {
                // The tables read, and the one an INSERT writes (its commit expects that version).
                let source = match node {
                    LogicalPlan::TableScan(scan) => Some(&scan.source),
                    LogicalPlan::Dml(dml) => Some(&dml.target),
                    _ => None,
                };
                if let Some(source) = source {
                    let provider = datafusion::datasource::source_as_provider(source).ok();
                    if let Some(t) = provider.as_ref().and_then(crate::commit::tracked) {
                        let siblings = crate::resolver::siblings(catalog, &t.def);
                        for d in std::iter::once(&t.def).chain(&siblings) {
                            tables.push((d.database.clone(), d.name.clone(), d.data_version));
                        }
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        tables.sort();
        tables.dedup();
        PlanStamp { schema_version: catalog.schema_version, tables }
    }

    /// Whether the catalog still is what the plan was planned against (tables another node
    /// committed to are reloaded to tell).
    async fn holds(&self, catalog: &bowman_catalog::Catalog) -> Result<bool> {
        if catalog.snapshot().schema_version != self.schema_version {
            return Ok(false);
        }
        for (database, name, version) in &self.tables {
            if catalog.table(database, name).await?.map(|t| t.data_version) != Some(*version) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl Prepared {
    /// The parameter types DataFusion inferred, in `$1..$n` order (`None` where it could not).
    pub fn param_types(&self) -> &[Option<DataType>] {
        &self.params
    }

    fn infer_param_types(plan: Option<&LogicalPlan>) -> Result<Vec<Option<DataType>>> {
        let Some(plan) = plan else { return Ok(vec![]) };
        let mut types = plan.get_parameter_types()?;
        // `$1::INT` leaves the placeholder itself untyped; the cast says what the client means.
        if types.values().any(Option::is_none) {
            for (id, t) in placeholder_cast_types(plan)? {
                if let Some(slot) = types.get_mut(&id) {
                    if slot.is_none() {
                        *slot = Some(t);
                    }
                }
            }
        }
        let mut ordered: Vec<(usize, Option<DataType>)> = types
            .into_iter()
            .filter_map(|(id, t)| id.trim_start_matches('$').parse::<usize>().ok().map(|n| (n, t)))
            .collect();
        ordered.sort_by_key(|(n, _)| *n);
        let count = ordered.last().map(|(n, _)| *n).unwrap_or(0);
        let mut out = vec![None; count];
        for (n, t) in ordered {
            out[n - 1] = t;
        }
        Ok(out)
    }

    /// The result columns, before parameters are bound; `None` for statements without rows.
    pub fn output_schema(&self) -> Option<SchemaRef> {
        if let Some(rows) = &self.rows {
            return Some(rows.clone());
        }
        if matches!(self.statement, Some(Statement::DeclareCursor { .. })) {
            return None;
        }
        match (&self.plan, &self.statement) {
            (Some(plan), _) => plan_output_schema(plan),
            (None, Some(stmt)) => crate::ddl::statement_schema(stmt),
            (None, None) => None,
        }
    }
}

/// Types of placeholders that appear directly under a CAST.
fn placeholder_cast_types(plan: &LogicalPlan) -> Result<Vec<(String, DataType)>> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Expr;
    let mut found = Vec::new();
    plan.apply(|node| {
        for expr in node.expressions() {
            expr.apply(|e| {
                if let Expr::Cast(c) = e {
                    if let Expr::Placeholder(p) = c.expr.as_ref() {
                        found.push((p.id.clone(), c.field.data_type().clone()));
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(found)
}

fn plan_output_schema(plan: &LogicalPlan) -> Option<SchemaRef> {
    match plan {
        LogicalPlan::Dml(_) | LogicalPlan::Ddl(_) | LogicalPlan::Statement(_) => None,
        other => {
            let schema = other.schema().as_arrow();
            Some(crate::column_names::client_schema(schema).unwrap_or_else(|| Arc::new(schema.clone())))
        }
    }
}

impl Session {
    pub(crate) fn new(engine: Arc<Engine>, ctx: SessionContext) -> Self {
        let life = crate::registry::SessionLife::new(&engine.statements);
        Session { engine, ctx, settings: Settings::default(), progress: None, cursors: Default::default(), temp_views: Default::default(), transaction: Default::default(), user: None, trusted: false, life }
    }

    /// Make this session call the engine's current data-built functions (created, replaced or
    /// dropped by any session or node).
    pub(crate) fn register_functions(&mut self) {
        for udf in self.engine.functions.udfs() {
            if datafusion::execution::FunctionRegistry::udf(&self.ctx, udf.name()).ok().is_none_or(|mine| *mine != *udf) {
                self.ctx.register_udf((*udf).clone());
            }
        }
    }

    /// Send the client a NOTICE (when it listens for them).
    pub(crate) fn notice(&self, message: impl Into<String>) {
        self.send_notice("NOTICE", "00000", message.into());
    }

    /// Send the client a WARNING (when it listens for them).
    pub(crate) fn warning(&self, message: impl Into<String>) {
        self.send_notice("WARNING", "01000", message.into());
    }

    fn send_notice(&self, severity: &'static str, code: &'static str, message: String) {
        if let Some(p) = &self.progress {
            let _ = p.send(crate::output::Notice { severity, code, message });
        }
    }

    /// Where notices and warnings go: the progress of long statements (rows written so far,
    /// elapsed time, every `progress_interval`, a session setting; 2s by default) and
    /// warnings such as a ROLLBACK that cannot undo.
    pub fn set_progress_sink(&mut self, sink: tokio::sync::mpsc::UnboundedSender<crate::output::Notice>) {
        self.progress = Some(sink);
    }

    /// Run a write plan to completion, reporting the rows its sink has received so far.
    async fn run_write(&self, plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>, label: &str) -> Result<usize> {
        let task = self.ctx.task_ctx();
        let run = crate::exec::collect(plan.clone(), task);
        if self.progress.is_none() {
            return Ok(count_rows(&run.await?));
        }
        let started = std::time::Instant::now();
        let mut ticker = tokio::time::interval(self.bowman_settings().progress_interval());
        // A busy runtime delays ticks; report once when it catches up rather than in a burst.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        ticker.tick().await;
        tokio::pin!(run);
        loop {
            tokio::select! {
                done = &mut run => {
                    let rows = count_rows(&done?);
                    return Ok(rows);
                }
                _ = ticker.tick() => {
                    // The sink's input counts the rows handed to the writers so far; the leaves
                    // count rows read (a sort reads everything before it writes anything).
                    let written = rows_written(plan.as_ref()).unwrap_or_else(|| {
                        plan.children().first().and_then(|input| input.metrics()).and_then(|m| m.output_rows()).unwrap_or(0)
                    });
                    self.notice(format!(
                        "{label}: {} rows read, {written} written ({:.0}s)",
                        rows_read(plan.as_ref()),
                        started.elapsed().as_secs_f64()
                    ));
                }
            }
        }
    }

    /// The database (PostgreSQL schema) unqualified table names resolve in.
    pub fn current_database(&self) -> String {
        self.ctx.state().config().options().catalog.default_schema.clone()
    }

    pub(crate) fn set_current_database(&self, db: &str) {
        let db = bowman_catalog::canonical_database(db);
        self.ctx.state_ref().write().config_mut().options_mut().catalog.default_schema = db.to_string();
    }

    /// The value of a session setting, as `SHOW` reports it.
    pub fn setting(&self, name: &str) -> Option<String> {
        crate::settings::show_value(self, name)
    }

    /// Parse and run every statement of `sql`, stopping at the first error.
    pub async fn execute_sql(&mut self, sql: &str) -> Result<Vec<Output>> {
        let mut out = Vec::new();
        for stmt in parse_sql(sql)? {
            self.set_query_text(sql);
            out.push(self.execute(stmt).await?);
        }
        Ok(out)
    }

    /// Run one statement, within the session's `statement_timeout`.
    pub async fn execute(&mut self, stmt: Statement) -> Result<Output> {
        let (mut statement, _inside) = self.begin_statement(|| crate::registry::statement_kind(&stmt));
        let deadline = self.statement_deadline();
        let writes = crate::transaction::writes(&stmt);
        let large = crate::limits::is_large(&stmt);
        let run = tracing::Instrument::instrument(within(deadline, self.execute_inner(stmt)), statement.span());
        let output = statement.check(off_scheduler(large, run).await)?;
        if writes {
            self.transaction.wrote(&write_tag(&output));
        }
        Ok(self.track(statement, with_deadline(output, deadline)))
    }

    /// When the running statement must end (`SET statement_timeout`; 0 means never).
    fn statement_deadline(&self) -> Option<tokio::time::Instant> {
        self.bowman_settings().statement_timeout().map(|timeout| tokio::time::Instant::now() + timeout)
    }

    async fn execute_inner(&mut self, stmt: Statement) -> Result<Output> {
        // Only the log is read here; tables another node committed to reload when opened.
        self.engine.catalog.sync().await?;
        self.engine.sync_functions().await?;
        self.register_functions();
        self.dispatch(stmt).await
    }

    /// Run one statement against the current catalog snapshot (the caller refreshed it).
    async fn dispatch(&mut self, stmt: Statement) -> Result<Output> {
        match stmt {
            Statement::Standard(s) if crate::insert::is_spark_insert(&s) => crate::insert::execute(self, *s).await,
            Statement::Standard(s) if matches!(&*s, ast::Statement::Explain { statement, .. } if crate::insert::is_spark_insert(statement)) => {
                let ast::Statement::Explain { statement, analyze, verbose, .. } = *s else { unreachable!("matched EXPLAIN") };
                let plan = crate::insert::plan(self, *statement).await?;
                let plan = datafusion::logical_expr::LogicalPlanBuilder::from(plan).explain(verbose, analyze)?.build()?;
                self.run_plan(plan).await
            }
            Statement::Standard(s) if matches!(*s, ast::Statement::Copy { .. }) => crate::copy::copy_to(self, *s).await,
            Statement::Explain { analyze, verbose, statement, what } => crate::ddl::explain(self, *statement, analyze, verbose, &what).await,
            Statement::Standard(s) => {
                let plan = self.plan_standard(*s).await?;
                self.run_plan(plan).await
            }
            Statement::Set { name, value } => crate::settings::set(self, &name, value),
            Statement::Reset { name } => crate::settings::reset(self, name.as_deref()),
            Statement::Show { name } => crate::settings::show(self, &name),
            Statement::Begin => {
                self.transaction.begin();
                Ok(Output::TransactionStart)
            }
            Statement::Commit => {
                self.cursors.retain(|_, c| c.hold);
                self.transaction.end(false);
                Ok(Output::TransactionEnd { tag: "COMMIT".into() })
            }
            Statement::Rollback => {
                self.cursors.retain(|_, c| c.hold);
                if let Some(warning) = self.transaction.end(true) {
                    self.warning(warning);
                }
                Ok(Output::TransactionEnd { tag: "ROLLBACK".into() })
            }
            Statement::Savepoint { tag } => Ok(Output::command(&tag)),
            Statement::DeclareCursor { scroll: true, .. } => Err(scroll_unsupported()),
            Statement::DeclareCursor { name, query, hold, .. } => {
                let plan = self.plan_query(query).await?;
                self.declare_cursor(name, plan, hold).await
            }
            Statement::Fetch { name, count } => self.fetch(&name, count).await,
            Statement::CloseCursor { name: Some(name) } => match self.cursors.remove(&name) {
                Some(_) => Ok(Output::command("CLOSE CURSOR")),
                None => Err(BowmanError::InvalidCursor(name)),
            },
            Statement::CloseCursor { name: None } => {
                self.cursors.clear();
                Ok(Output::command("CLOSE CURSOR ALL"))
            }
            // The front end that keeps prepared statements (pgwire) forgets them before this.
            Statement::Deallocate { name } => Ok(Output::command(if name.is_some() { "DEALLOCATE" } else { "DEALLOCATE ALL" })),
            other => crate::ddl::execute(self, other).await,
        }
    }

    async fn declare_cursor(&mut self, name: String, plan: LogicalPlan, hold: bool) -> Result<Output> {
        if self.cursors.contains_key(&name) {
            return Err(BowmanError::DuplicateCursor(name));
        }
        let df = self.ctx.execute_logical_plan(plan).await?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let stream = crate::exec::dataframe_stream(df).await?;
        self.cursors.insert(name, Cursor { schema, stream: std::sync::Mutex::new(stream), pending: None, hold });
        Ok(Output::command("DECLARE CURSOR"))
    }

    /// The next `count` rows of a cursor (all that remain for `None`).
    async fn fetch(&mut self, name: &str, count: Option<u64>) -> Result<Output> {
        use futures::StreamExt;
        let cursor = self.cursors.get_mut(name).ok_or_else(|| BowmanError::InvalidCursor(name.to_string()))?;
        let mut wanted = count.unwrap_or(u64::MAX);
        let mut out = Vec::new();
        while wanted > 0 {
            let batch = match cursor.pending.take() {
                Some(b) => b,
                None => match cursor.stream.get_mut().map_err(|_| BowmanError::Internal("cursor poisoned".into()))?.next().await {
                    Some(b) => b?,
                    None => break,
                },
            };
            let n = batch.num_rows() as u64;
            if n > wanted {
                out.push(batch.slice(0, wanted as usize));
                cursor.pending = Some(batch.slice(wanted as usize, (n - wanted) as usize));
                wanted = 0;
            } else {
                wanted -= n;
                out.push(batch);
            }
        }
        let schema = cursor.schema.clone();
        let stream = datafusion::physical_plan::memory::MemoryStream::try_new(out, schema.clone(), None)?;
        Ok(Output::Rows { schema, stream: Box::pin(stream) })
    }

    /// The columns of an open cursor (a front end describing it as a portal).
    pub fn cursor_schema(&self, name: &str) -> Option<SchemaRef> {
        self.cursors.get(name).map(|c| c.schema.clone())
    }

    /// Parse (and plan) one statement for later execution with parameters.
    pub async fn prepare(&mut self, sql: &str) -> Result<Prepared> {
        let mut stmts = parse_sql(sql)?;
        if stmts.len() > 1 {
            return Err(BowmanError::Syntax("cannot insert multiple commands into a prepared statement".into()));
        }
        let statement = stmts.pop();
        let large = statement.as_ref().is_some_and(crate::limits::is_large);
        off_scheduler(large, self.prepare_parsed(sql, statement)).await
    }

    async fn prepare_parsed(&mut self, sql: &str, statement: Option<Statement>) -> Result<Prepared> {
        self.engine.catalog.sync().await?;
        self.engine.sync_functions().await?;
        self.register_functions();
        let plan = match &statement {
            Some(Statement::Standard(s)) if matches!(**s, ast::Statement::Copy { .. }) => None,
            Some(Statement::Standard(s)) if !crate::insert::is_spark_insert(s) => Some(self.plan_standard((**s).clone()).await?),
            Some(Statement::DeclareCursor { scroll: true, .. }) => return Err(scroll_unsupported()),
            Some(Statement::DeclareCursor { query, .. }) => Some(self.plan_query(query.clone()).await?),
            _ => None,
        };
        let params = Prepared::infer_param_types(plan.as_ref())?;
        let rows = match &statement {
            Some(Statement::Fetch { name, .. }) => {
                Some(self.cursor_schema(name).ok_or_else(|| BowmanError::InvalidCursor(name.clone()))?)
            }
            _ => None,
        };
        let planned_against = PlanStamp::of(plan.as_ref(), &self.engine.catalog.snapshot());
        Ok(Prepared { sql: sql.to_string(), statement, plan, params, planned_against, rows })
    }

    /// The result columns of `prepared` once `params` are bound (a bare `SELECT $1` only has a
    /// type after binding).
    pub fn bound_schema(&self, prepared: &Prepared, params: &ParamValues) -> Result<Option<SchemaRef>> {
        match &prepared.plan {
            Some(_) if matches!(prepared.statement, Some(Statement::DeclareCursor { .. })) => Ok(None),
            Some(plan) => {
                let bound = plan.clone().replace_params_with_values(params)?;
                Ok(plan_output_schema(&bound))
            }
            None => Ok(prepared.output_schema()),
        }
    }

    /// Run a prepared statement with its parameter values, within `statement_timeout`.
    pub async fn execute_prepared(&mut self, prepared: &Prepared, params: &ParamValues) -> Result<Output> {
        let deadline = self.statement_deadline();
        let (mut statement, _inside) = self.begin_statement(|| prepared.sql.clone());
        let large = prepared.statement.as_ref().is_some_and(crate::limits::is_large);
        let run = tracing::Instrument::instrument(within(deadline, self.execute_prepared_inner(prepared, params)), statement.span());
        let output = statement.check(off_scheduler(large, run).await)?;
        if prepared.statement.as_ref().is_some_and(crate::transaction::writes) {
            self.transaction.wrote(&write_tag(&output));
        }
        Ok(self.track(statement, with_deadline(output, deadline)))
    }

    async fn execute_prepared_inner(&mut self, prepared: &Prepared, params: &ParamValues) -> Result<Output> {
        self.engine.catalog.sync().await?;
        self.engine.sync_functions().await?;
        self.register_functions();
        let unchanged = prepared.plan.is_some() && prepared.planned_against.holds(&self.engine.catalog).await?;
        match (&prepared.plan, &prepared.statement) {
            (Some(plan), Some(Statement::DeclareCursor { name, query, hold, .. })) => {
                let plan = if unchanged { plan.clone() } else { self.plan_query(query.clone()).await? };
                let plan = plan.replace_params_with_values(params)?;
                self.declare_cursor(name.clone(), plan, *hold).await
            }
            (Some(plan), Some(Statement::Standard(stmt))) => {
                // Tables may have changed since Parse: plan again against the current catalog.
                let plan = if unchanged {
                    plan.clone()
                } else {
                    self.plan_standard((**stmt).clone()).await?
                };
                let plan = plan.replace_params_with_values(params)?;
                self.run_plan(plan).await
            }
            // Statements Bowman runs itself (Spark's INSERT forms) get their `$n` values as literals.
            (_, Some(stmt)) => self.dispatch(crate::params::bind_literals(stmt.clone(), params)?).await,
            (_, None) => Ok(Output::command("")),
        }
    }

    async fn plan_standard(&self, mut stmt: ast::Statement) -> Result<LogicalPlan> {
        check_supported(&stmt)?;
        self.inline_current_setting(&mut stmt)?;
        crate::column_names::distinct_select_names(&mut stmt);
        crate::pg_functions::rewrite_like_escape(&mut stmt);
        self.ctx.register_udf(crate::pg_functions::current_setting(crate::settings::snapshot(self)));
        crate::views::rewrite_information_schema_views(&mut stmt);
        crate::spark::rewrite_statement(&mut stmt)?;
        let state = self.ctx.state();
        let plan = state.statement_to_plan(DFStatement::Statement(Box::new(stmt))).await?;
        self.distribute_by_hash(plan)
    }

    /// `current_setting('name')` reads this session's settings: it becomes the value as a literal
    /// (a UDF cannot see the session). Unknown names fail as in PostgreSQL (42704).
    fn inline_current_setting(&self, stmt: &mut ast::Statement) -> Result<()> {
        use std::ops::ControlFlow;
        let mut failed = None;
        let _ = ast::visit_expressions_mut(stmt, |e| {
            if let ast::Expr::Function(f) = e {
                let name = f.name.to_string().to_ascii_lowercase();
                if name == "current_setting" || name == "pg_catalog.current_setting" {
                    if let ast::FunctionArguments::List(list) = &f.args {
                        let missing_ok = matches!(list.args.get(1),
                            Some(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Value(v))))
                                if matches!(v.value, ast::Value::Boolean(true)));
                        if let Some(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Value(v)))) = list.args.first() {
                            if let ast::Value::SingleQuotedString(setting) = &v.value {
                                match crate::settings::show_value(self, setting) {
                                    Some(value) => *e = ast::Expr::Value(ast::Value::SingleQuotedString(value).into()),
                                    None if missing_ok => *e = ast::Expr::Value(ast::Value::Null.into()),
                                    None => {
                                        failed = Some(BowmanError::UnknownSetting(setting.clone()));
                                        return ControlFlow::Break(());
                                    }
                                }
                            }
                        }
                    }
                }
            }
            ControlFlow::Continue(())
        });
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Plan a query (the source of CREATE TABLE AS SELECT or INSERT ... PARTITION).
    pub(crate) async fn plan_query(&self, mut query: Box<ast::Query>) -> Result<LogicalPlan> {
        crate::spark::rewrite_query(&mut query)?;
        let state = self.ctx.state();
        let plan = state.statement_to_plan(DFStatement::Statement(Box::new(ast::Statement::Query(query)))).await?;
        self.distribute_by_hash(plan)
    }

    /// DataFusion's SQL planner produces `DISTRIBUTE BY` as a repartitioning its physical
    /// planner does not implement; Spark's meaning is a hash partitioning over the session's
    /// parallelism, which DataFusion does implement.
    fn distribute_by_hash(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        use datafusion::logical_expr::{Partitioning, Repartition};
        let partitions = self.ctx.state().config().target_partitions();
        let rewritten = plan.transform_up(|node| match node {
            LogicalPlan::Repartition(Repartition { input, partitioning_scheme: Partitioning::DistributeBy(exprs) }) => {
                Ok(Transformed::yes(LogicalPlan::Repartition(Repartition {
                    input,
                    partitioning_scheme: Partitioning::Hash(exprs, partitions),
                })))
            }
            other => Ok(Transformed::no(other)),
        })?;
        Ok(rewritten.data)
    }

    pub(crate) async fn run_plan(&self, plan: LogicalPlan) -> Result<Output> {
        // Progress names the table as the statement did.
        let label = write_label(&plan);
        let plan = self.tracked_writes(plan)?;
        if let Some(label) = label {
            if let LogicalPlan::Dml(DmlStatement { op: WriteOp::Insert(op), .. }) = &plan
                && *op != InsertOp::Append
            {
                return Err(BowmanError::NotSupported(format!("INSERT {op}")));
            }
            let rows = self.write_rows(plan, &label).await?;
            return Ok(Output::Command { tag: "INSERT".into(), rows: Some(rows) });
        }
        if let LogicalPlan::Dml(d) = &plan {
            let tag = match d.op {
                WriteOp::Delete => "DELETE",
                WriteOp::Update => "UPDATE",
                WriteOp::Truncate => "TRUNCATE TABLE",
                WriteOp::MergeInto(_) => "MERGE",
                _ => "SELECT",
            };
            let df = self.ctx.execute_logical_plan(plan).await?;
            let batches: Vec<_> = crate::exec::dataframe_stream(df).await?.try_collect().await?;
            return Ok(Output::Command { tag: tag.into(), rows: Some(count_rows(&batches)) });
        }
        let df = self.ctx.execute_logical_plan(plan).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let (schema, stream) = crate::column_names::client_rows(schema, crate::exec::dataframe_stream(df).await?);
        Ok(Output::Rows { schema, stream })
    }
}

impl Session {
    /// Append the rows of `input` to `provider`, a table that commits in its own sink (Delta,
    /// a remote database; tracked tables take [`Session::tracked_write_plan`]), and return how
    /// many were written.
    ///
    /// The write is planned as a logical INSERT, not by calling `insert_into` on a physical
    /// plan: only the physical optimizer adds the merge that hands the sink all input
    /// partitions (keeping SORT BY order). Driving a sink by hand reads just its first input
    /// partition and silently drops the rest.
    pub(crate) async fn write(
        &self,
        table: datafusion::common::TableReference,
        provider: Arc<dyn datafusion::catalog::TableProvider>,
        input: LogicalPlan,
    ) -> Result<usize> {
        let label = format!("INSERT INTO {table}");
        let plan = self.insert_plan(table, provider, input)?;
        let physical = self.ctx.execute_logical_plan(plan).await?.create_physical_plan().await?;
        self.run_write(physical, &label).await
    }

    /// DataFusion's INSERT of `input` into `provider` (tables whose writes need no catalog
    /// commit: Delta commits in its sink, remote databases in theirs).
    pub(crate) fn insert_plan(
        &self,
        table: datafusion::common::TableReference,
        provider: Arc<dyn datafusion::catalog::TableProvider>,
        input: LogicalPlan,
    ) -> Result<LogicalPlan> {
        if let (Some(database), name) = (table.schema(), table.table()) {
            self.require_table(database, name, "INSERT")?;
        }
        let source = datafusion::catalog::default_table_source::provider_as_source(provider);
        Ok(datafusion::logical_expr::LogicalPlanBuilder::insert_into(input, table, source, InsertOp::Append)?.build()?)
    }

    /// The plan of a write to a tracked table: writers distributed by `distribute_by` (else
    /// the partition columns), sorted by `sort_by` within each, and the catalog commit that
    /// replaces what `mode` says.
    pub(crate) fn tracked_write_plan(
        &self,
        provider: &Arc<dyn datafusion::catalog::TableProvider>,
        mode: crate::commit::WriteMode,
        input: LogicalPlan,
        distribute_by: Vec<datafusion::logical_expr::Expr>,
        sort_by: Vec<datafusion::logical_expr::SortExpr>,
    ) -> Result<LogicalPlan> {
        let commit = crate::commit::Commit::new(self, provider, mode)?;
        Ok(crate::plan::write::WriteNode::new(provider, commit, distribute_by, sort_by, input).plan())
    }

    /// The plan of CREATE TABLE ... AS SELECT into a tracked table (`provider` opened over the
    /// new definition): the write, whose commit creates the table.
    pub(crate) fn creating_write_plan(
        &self,
        provider: &Arc<dyn datafusion::catalog::TableProvider>,
        if_not_exists: bool,
        input: LogicalPlan,
    ) -> Result<LogicalPlan> {
        let commit = crate::commit::Commit::new(self, provider, crate::commit::WriteMode::Nothing)?.creating(if_not_exists);
        Ok(crate::plan::write::WriteNode::new(provider, commit, vec![], vec![], input).plan())
    }

    /// DataFusion's INSERTs into tracked tables (`INSERT INTO t VALUES ...`, also under
    /// EXPLAIN) become Bowman's write with its commit.
    fn tracked_writes(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        let rewritten = plan.transform_up(|node| {
            let LogicalPlan::Dml(DmlStatement { op: WriteOp::Insert(InsertOp::Append), target, input, .. }) = &node else {
                return Ok(Transformed::no(node));
            };
            let provider = datafusion::datasource::source_as_provider(target)?;
            if crate::commit::tracked(&provider).is_none() {
                return Ok(Transformed::no(node));
            }
            let input = input.as_ref().clone();
            let plan = self
                .tracked_write_plan(&provider, crate::commit::WriteMode::Nothing, input, vec![], vec![])
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
            Ok(Transformed::yes(plan))
        })?;
        Ok(rewritten.data)
    }

    /// Plan and run a write, returning the rows written.
    pub(crate) async fn write_rows(&self, plan: LogicalPlan, label: &str) -> Result<usize> {
        let physical = self.ctx.execute_logical_plan(plan).await?.create_physical_plan().await?;
        self.run_write(physical, label).await
    }
}

/// `Some(progress label)` when `plan` is a write (rather than EXPLAIN of one, or a query).
fn write_label(plan: &LogicalPlan) -> Option<String> {
    match plan {
        LogicalPlan::Dml(DmlStatement { op: WriteOp::Insert(_), table_name, .. }) => Some(format!("INSERT INTO {table_name}")),
        LogicalPlan::Extension(e) => {
            let node = e.node.as_any().downcast_ref::<crate::plan::write::WriteNode>()?;
            Some(format!("INSERT INTO {}", node.table))
        }
        _ => None,
    }
}

/// How a write shows in a ROLLBACK's warning: its command tag.
fn write_tag(output: &Output) -> String {
    match output {
        Output::Command { tag, .. } if !tag.is_empty() => tag.clone(),
        _ => "a statement".to_string(),
    }
}

fn scroll_unsupported() -> BowmanError {
    BowmanError::NotSupported("SCROLL cursors; cursors move forward only (use NO SCROLL or omit it)".into())
}

fn timed_out() -> BowmanError {
    BowmanError::Canceled("statement timeout".into())
}

/// Run `work`; when `large`, on a thread of its own (Tokio's `block_in_place`), so that
/// planning a large statement, which does not yield, leaves the scheduler's threads to other
/// sessions. Only a multi-threaded runtime can hand its thread over; elsewhere `work` just runs.
async fn off_scheduler<F: std::future::Future>(large: bool, work: F) -> F::Output {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if large && handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(move || handle.block_on(work))
        }
        _ => work.await,
    }
}

/// Run `work`, giving up at `deadline`.
async fn within<T>(deadline: Option<tokio::time::Instant>, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    match deadline {
        None => work.await,
        Some(d) => tokio::time::timeout_at(d, work).await.map_err(|_| timed_out())?,
    }
}

/// Rows keep streaming after `execute` returns: the deadline travels with them.
fn with_deadline(output: Output, deadline: Option<tokio::time::Instant>) -> Output {
    let Some(deadline) = deadline else { return output };
    let Output::Rows { schema, stream } = output else { return output };
    let sleep = Box::pin(tokio::time::sleep_until(deadline));
    let limited = futures::stream::unfold((stream, sleep, false), |(mut rows, mut sleep, expired)| async move {
        if expired {
            return None;
        }
        tokio::select! {
            item = futures::StreamExt::next(&mut rows) => item.map(|item| (item, (rows, sleep, false))),
            _ = &mut sleep => {
                let err = datafusion::error::DataFusionError::External(Box::new(timed_out()));
                Some((Err(err), (rows, sleep, true)))
            }
        }
    });
    Output::Rows {
        schema: schema.clone(),
        stream: Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, limited)),
    }
}

/// Rows produced so far by the leaves (scans) of a running plan.
/// The rows Bowman's writers have written so far (their `rows_written` metric), if the plan
/// has any.
fn rows_written(plan: &dyn datafusion::physical_plan::ExecutionPlan) -> Option<usize> {
    if plan.name() == "TrackedWriteExec" {
        return plan.metrics().and_then(|m| m.sum_by_name("rows_written")).map(|v| v.as_usize());
    }
    plan.children().into_iter().find_map(|c| rows_written(c.as_ref()))
}

fn rows_read(plan: &dyn datafusion::physical_plan::ExecutionPlan) -> usize {
    let children = plan.children();
    if children.is_empty() {
        return plan.metrics().and_then(|m| m.output_rows()).unwrap_or(0);
    }
    children.iter().map(|c| rows_read(c.as_ref())).sum()
}

/// The `count` column DataFusion's DML plans return.
pub(crate) fn count_rows(batches: &[datafusion::arrow::array::RecordBatch]) -> usize {
    batches
        .iter()
        .filter_map(|b| b.column_by_name("count"))
        .filter_map(|c| c.as_any().downcast_ref::<UInt64Array>().map(|a| (0..a.len()).map(|i| a.value(i)).sum::<u64>()))
        .sum::<u64>() as usize
}

/// Statements DataFusion would accept but that would bypass Bowman's catalog (or that Bowman
/// does not offer) are refused up front with a clear SQLSTATE 0A000.
fn check_supported(stmt: &ast::Statement) -> Result<()> {
    use ast::Statement as S;
    match stmt {
        S::Query(_) | S::Insert(_) | S::Explain { .. } | S::Update(_) | S::Delete(_) => Ok(()),
        S::CreateView(_) => Err(BowmanError::NotSupported("CREATE VIEW".into())),
        S::Truncate(_) => Err(BowmanError::NotSupported("TRUNCATE".into())),
        other => {
            let text = other.to_string();
            let words: Vec<&str> = text.split_whitespace().take(2).collect();
            Err(BowmanError::NotSupported(words.join(" ").to_uppercase()))
        }
    }
}
