//! Views: `CREATE [OR REPLACE] [TEMPORARY] VIEW v [(cols)] AS query`, `DROP VIEW`, and
//! [`ViewProvider`], the table DataFusion reads a view through.
//!
//! A persistent view lives in the catalog as its query text, the database its unqualified names
//! refer to, and its columns (a [`ViewDef`]); a temporary view lives in the session, beside the
//! `CREATE TEMPORARY VIEW ... USING` tables. Reading either plans the stored query again, in
//! the reading session (its functions, settings and tables as they are now) with Bowman's
//! dialect and Spark rewrites, and casts the result to the view's columns, as Spark does: a
//! table dropped under a view fails the read with 42P01 naming that table, and a query whose
//! columns changed fails instead of returning other columns.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use bowman_catalog::{CatalogChange, ColumnDef, ViewDef};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session as CatalogSession, TableProvider};
use datafusion::common::Column;
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, TableProviderFilterPushDown, cast};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast;

use crate::error::{BowmanError, Result};
use crate::output::Output;
use crate::parser::{CreateView, Statement, TableName};
use crate::session::Session;

/// How deep views may read other views before Bowman calls it a cycle (`v` reading `w` reading `v`).
const MAX_VIEW_DEPTH: usize = 32;

/// How many views the query being planned is inside (a session config extension).
#[derive(Debug)]
struct ViewDepth(usize);

/// A view as DataFusion sees it: the stored columns as its schema; its query planned in the
/// reading session at scan time.
#[derive(Debug)]
pub(crate) struct ViewProvider {
    def: ViewDef,
    schema: SchemaRef,
    temporary: bool,
}

impl ViewProvider {
    pub(crate) fn new(def: ViewDef, temporary: bool) -> Result<Self> {
        let fields = def
            .columns
            .iter()
            .map(|c| {
                let (t, _) = crate::types::parse_type(&c.data_type).map_err(|e| {
                    BowmanError::InvalidDefinition(format!("column {} of view {}: {}", c.name, def.qualified_name(), e.message()))
                })?;
                Ok(Field::new(&c.name, t, true))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ViewProvider { def, schema: Arc::new(Schema::new(fields)), temporary })
    }

    fn display_name(&self) -> String {
        if self.temporary { self.def.name.clone() } else { self.def.qualified_name() }
    }

    /// The stored query, planned in `state` with unqualified names in the view's database, and
    /// its columns cast and renamed to the view's; with the state to plan it physically in (one
    /// view deeper).
    async fn plan(&self, state: &SessionState) -> datafusion::error::Result<(LogicalPlan, SessionState)> {
        let name = self.display_name();
        let depth = state.config().get_extension::<ViewDepth>().map(|d| d.0).unwrap_or(0);
        if depth >= MAX_VIEW_DEPTH {
            return Err(external(BowmanError::InvalidDefinition(format!(
                "infinite recursion: view {name} reads itself through other views; recreate one of them"
            ))));
        }
        let mut state = state.clone();
        state.config_mut().options_mut().catalog.default_schema = self.def.query_database.clone();
        state.config_mut().set_extension(Arc::new(ViewDepth(depth + 1)));
        // The tables the view reads are checked against its owner's privileges.
        crate::privileges::enter_view(&mut state, &self.def.owner);
        let mut query = parse_query(&self.def.query).map_err(external)?;
        crate::spark::rewrite_query(&mut query).map_err(external)?;
        let plan = state
            .statement_to_plan(DFStatement::Statement(Box::new(ast::Statement::Query(query))))
            .await
            .map_err(|e| e.context(format!("view {name}")))?;
        let fields = plan.schema().fields().len();
        if fields != self.schema.fields().len() {
            return Err(external(BowmanError::InvalidDefinition(format!(
                "view {name} is out of date: its query now returns {fields} columns, the view has {}; \
                 recreate it with CREATE OR REPLACE VIEW",
                self.schema.fields().len()
            ))));
        }
        let exprs: Vec<Expr> = (0..fields)
            .map(|i| {
                let (qualifier, field) = plan.schema().qualified_field(i);
                let column = Expr::Column(Column::from((qualifier, field)));
                let target = self.schema.field(i);
                let value = if field.data_type() == target.data_type() { column } else { cast(column, target.data_type().clone()) };
                value.alias(target.name())
            })
            .collect();
        let plan = LogicalPlanBuilder::from(plan).project(exprs)?.build()?;
        Ok((plan, state))
    }
}

fn external(e: BowmanError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// A stored view query back as a query.
fn parse_query(sql: &str) -> Result<Box<ast::Query>> {
    match crate::parser::parse_sql(sql)?.pop() {
        Some(Statement::Standard(s)) => match *s {
            ast::Statement::Query(q) => Ok(q),
            other => Err(BowmanError::Internal(format!("a view's query is not a query: {other}"))),
        },
        _ => Err(BowmanError::Internal("a view's query did not parse as a query".into())),
    }
}

#[async_trait]
impl TableProvider for ViewProvider {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn get_table_definition(&self) -> Option<&str> {
        Some(&self.def.query)
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        // The filters become a Filter over the view's plan, so they are applied exactly.
        Ok(vec![TableProviderFilterPushDown::Exact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let state = state
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| DataFusionError::Internal("views are planned in a DataFusion SessionState".into()))?
            .clone();
        // Physical planning of a view plans the views it reads inside this scan, and so on down:
        // each level runs as a task of its own, so a deep chain of views (or a cycle, until the
        // depth limit stops it) never grows one thread's stack.
        let view = ViewProvider { def: self.def.clone(), schema: self.schema.clone(), temporary: self.temporary };
        let (projection, filters) = (projection.cloned(), filters.to_vec());
        tokio::spawn(async move { view.scan_here(&state, projection.as_ref(), &filters, limit).await })
            .await
            .map_err(|e| DataFusionError::Internal(format!("planning a view: {e}")))?
    }
}

impl ViewProvider {
    async fn scan_here(
        &self,
        state: &SessionState,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let (plan, state) = self.plan(state).await?;
        let mut builder = LogicalPlanBuilder::from(plan);
        if let Some(filter) = filters.iter().cloned().reduce(|a, b| a.and(b)) {
            builder = builder.filter(filter)?;
        }
        if let Some(projection) = projection {
            let all: Vec<usize> = (0..self.schema.fields().len()).collect();
            if *projection != all {
                let columns: Vec<Expr> =
                    projection.iter().map(|&i| Expr::Column(Column::from_name(self.schema.field(i).name()))).collect();
                builder = builder.project(columns)?;
            }
        }
        if let Some(limit) = limit {
            builder = builder.limit(0, Some(limit))?;
        }
        state.create_physical_plan(&builder.build()?).await
    }
}

/// The catalog views `plan` reads directly.
fn views_read(plan: &LogicalPlan) -> Vec<(String, String)> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut found = Vec::new();
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if let Ok(provider) = datafusion::datasource::source_as_provider(&scan.source) {
                let any: &dyn std::any::Any = provider.as_ref();
                if let Some(v) = any.downcast_ref::<ViewProvider>() {
                    if !v.temporary {
                        found.push((v.def.database.clone(), v.def.name.clone()));
                    }
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// The relations a stored view's query names (from its text, names bound in its database),
/// whether or not they exist now.
fn views_named(def: &ViewDef) -> Vec<(String, String)> {
    let Ok(query) = parse_query(&def.query) else { return vec![] };
    let mut out = Vec::new();
    let _ = ast::visit_relations(&ast::Statement::Query(query), |name| {
        if let Ok(t) = crate::parser::table_name_from(name) {
            out.push((t.database.unwrap_or_else(|| def.query_database.clone()), t.name));
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    out
}

/// Whether a view `database.name` reading what `plan` reads would read itself, directly or
/// through other views (which PostgreSQL also refuses at CREATE time).
fn reads_itself(session: &Session, plan: &LogicalPlan, database: &str, name: &str) -> bool {
    let snapshot = session.engine.catalog.snapshot();
    let mut pending = views_read(plan);
    let mut seen = HashSet::new();
    while let Some((db, view)) = pending.pop() {
        if db == database && view == name {
            return true;
        }
        if !seen.insert((db.clone(), view.clone())) {
            continue;
        }
        if let Some(def) = snapshot.view(&db, &view) {
            pending.extend(views_named(def));
        }
    }
    false
}

/// `CREATE [OR REPLACE] [TEMPORARY] VIEW`: plan the query now (so a view that cannot be read is
/// refused at once, with the error its read would give), record its columns, store it.
pub(crate) async fn create_view(session: &mut Session, cv: CreateView) -> Result<Output> {
    let current = session.current_database();
    let text = cv.query.to_string();
    let plan = session.plan_query(cv.query.clone()).await?;
    let fields = plan.schema().fields();
    if !cv.columns.is_empty() && cv.columns.len() != fields.len() {
        return Err(BowmanError::InvalidDefinition(format!(
            "the column list of view {} names {} columns, but its query returns {}",
            cv.name,
            cv.columns.len(),
            fields.len()
        )));
    }
    let mut seen = HashSet::new();
    let mut columns = Vec::with_capacity(fields.len());
    for (i, f) in fields.iter().enumerate() {
        let (name, comment) = cv.columns.get(i).cloned().unwrap_or_else(|| (f.name().clone(), None));
        if !seen.insert(name.clone()) {
            return Err(BowmanError::InvalidDefinition(format!(
                "column \"{name}\" is specified more than once in view {}; give the query's columns distinct aliases",
                cv.name
            )));
        }
        columns.push(ColumnDef { name, data_type: crate::types::type_name(f.data_type())?, nullable: true, comment });
    }
    let created_at = crate::ddl::now_millis();
    if cv.temporary {
        if cv.name.database.is_some() {
            return Err(BowmanError::InvalidDefinition(format!(
                "a temporary view has no database; name it {} alone",
                cv.name.name
            )));
        }
        let name = cv.name.name.clone();
        let def = ViewDef {
            database: String::new(),
            name: name.clone(),
            query: text,
            query_database: current,
            columns,
            comment: cv.comment,
            created_at,
            owner: session.owner(),
        };
        let provider = Arc::new(ViewProvider::new(def, true)?);
        let mut temp = session.temp_views.write().expect("temp views");
        if temp.contains_key(&name) && !cv.or_replace {
            if cv.if_not_exists {
                return Ok(Output::command("CREATE VIEW"));
            }
            return Err(BowmanError::InvalidDefinition(format!(
                "temporary view {name} already exists; use CREATE OR REPLACE TEMPORARY VIEW"
            )));
        }
        temp.insert(name, provider);
        return Ok(Output::command("CREATE VIEW"));
    }
    let database = cv.name.database.clone().unwrap_or_else(|| current.clone());
    if reads_itself(session, &plan, &database, &cv.name.name) {
        return Err(BowmanError::InvalidDefinition(format!(
            "view {database}.{} would read itself (directly or through other views); name the tables its query reads",
            cv.name.name
        )));
    }
    session.require_create_in(bowman_catalog::canonical_database(&database))?;
    if cv.or_replace {
        session.require_table_owner(&database, &cv.name.name)?;
    }
    let def = ViewDef {
        database,
        name: cv.name.name.clone(),
        query: text,
        query_database: current,
        columns,
        comment: cv.comment,
        created_at,
        owner: session.owner(),
    };
    session
        .engine
        .catalog
        .apply(CatalogChange::CreateView { def, or_replace: cv.or_replace, if_not_exists: cv.if_not_exists })
        .await?;
    Ok(Output::command("CREATE VIEW"))
}

/// `DROP VIEW [IF EXISTS] v, ...`: a temporary view of that name first (as in Spark), else the
/// catalog's view. Naming a table fails with 42809, as in PostgreSQL.
pub(crate) async fn drop_views(session: &mut Session, names: Vec<TableName>, if_exists: bool) -> Result<Output> {
    for name in names {
        if name.database.is_none() && session.temp_views.write().expect("temp views").remove(&name.name).is_some() {
            continue;
        }
        let database = name.database.clone().unwrap_or_else(|| session.current_database());
        session.require_table_owner(&database, &name.name)?;
        session.engine.catalog.apply(CatalogChange::DropView { database, name: name.name, if_exists }).await?;
    }
    Ok(Output::command("DROP VIEW"))
}

fn quote_ident(name: &str) -> String {
    if !name.is_empty()
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
    {
        name.to_string()
    } else {
        format!("`{}`", name.replace('`', "``"))
    }
}

fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `SHOW CREATE TABLE v` / `SHOW CREATE VIEW v`, in Spark's layout.
pub(crate) fn render_create_view(def: &ViewDef) -> String {
    let columns: Vec<String> = def
        .columns
        .iter()
        .map(|c| match &c.comment {
            Some(comment) => format!("  {} COMMENT {}", quote_ident(&c.name), quote_str(comment)),
            None => format!("  {}", quote_ident(&c.name)),
        })
        .collect();
    let mut out = format!("CREATE VIEW {}.{} (\n{})\n", quote_ident(&def.database), quote_ident(&def.name), columns.join(",\n"));
    if let Some(c) = &def.comment {
        out.push_str(&format!("COMMENT {}\n", quote_str(c)));
    }
    out.push_str(&format!("AS {}", def.query));
    out
}

/// `DESCRIBE [EXTENDED] v`: the columns, then (extended) where the view lives and its query.
pub(crate) fn describe_rows(def: &ViewDef, extended: bool) -> Vec<Vec<Option<String>>> {
    let row = |a: &str, b: &str, c: Option<&str>| vec![Some(a.to_string()), Some(b.to_string()), c.map(str::to_string)];
    let mut rows: Vec<Vec<Option<String>>> = def.columns.iter().map(|c| row(&c.name, &c.data_type, c.comment.as_deref())).collect();
    if extended {
        rows.push(row("", "", None));
        rows.push(row("# Detailed Table Information", "", None));
        rows.push(row("Database", &def.database, None));
        rows.push(row("Table", &def.name, None));
        let created = chrono::DateTime::from_timestamp_millis(def.created_at).map(|t| t.to_rfc3339()).unwrap_or_default();
        rows.push(row("Created Time", &created, None));
        rows.push(row("Type", "VIEW", None));
        if let Some(c) = &def.comment {
            rows.push(row("Comment", c, None));
        }
        rows.push(row("View Text", &def.query, None));
        rows.push(row("View Catalog and Namespace", &format!("{}.{}", crate::engine::CATALOG_NAME, def.query_database), None));
    }
    rows
}

/// PostgreSQL's `information_schema.views` columns over DataFusion's (which calls the query
/// `definition`): every reference to the table becomes a query that adds `view_definition`
/// and the other columns PostgreSQL clients select.
pub(crate) fn rewrite_information_schema_views(stmt: &mut ast::Statement) {
    use datafusion::sql::sqlparser::ast::{TableAlias, TableFactor, VisitMut, VisitorMut};
    use std::ops::ControlFlow;
    struct Views;
    impl VisitorMut for Views {
        type Break = ();
        fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            let TableFactor::Table { name, alias, args: None, .. } = factor else { return ControlFlow::Continue(()) };
            let parts: Vec<String> = name.0.iter().map(|p| p.to_string().trim_matches('"').to_ascii_lowercase()).collect();
            let is_views = match parts.as_slice() {
                [s, t] => s == "information_schema" && t == "views",
                [_, s, t] => s == "information_schema" && t == "views",
                _ => false,
            };
            if !is_views {
                return ControlFlow::Continue(());
            }
            let Ok(query) = parse_query(
                "SELECT table_catalog, table_schema, table_name, definition AS view_definition, \
                 'NONE' AS check_option, 'NO' AS is_updatable, 'NO' AS is_insertable_into, \
                 'NO' AS is_trigger_updatable, 'NO' AS is_trigger_deletable, 'NO' AS is_trigger_insertable_into \
                 FROM information_schema.views",
            ) else {
                return ControlFlow::Continue(());
            };
            let alias = alias.clone().unwrap_or_else(|| TableAlias {
                explicit: true,
                name: ast::Ident::new("views"),
                columns: vec![],
                at: None,
            });
            *factor = TableFactor::Derived { lateral: false, subquery: query, alias: Some(alias), sample: None };
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Views);
}
