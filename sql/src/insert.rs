//! `INSERT INTO [TABLE] t PARTITION (p1 = 'v', p2) SELECT ...`: Hive/Spark partition specs.
//!
//! Static partition values (`p1 = 'v'`) are not in the query's output; dynamic ones (`p2`, or
//! partition columns the spec leaves out) come last in the query's output, in table order.
//! Columns match by position, as in Spark, with a clear error when the counts differ.

use bowman_catalog::CatalogError;
use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{Expr, LogicalPlan, cast, col, lit};
use datafusion::sql::sqlparser::ast;

use crate::error::{BowmanError, Result};
use crate::output::Output;
use crate::parser::{ident_value, table_name_from};
use crate::commit::WriteMode;
use crate::session::Session;
use crate::types::parse_type;

/// Whether an INSERT needs Bowman's planning rather than DataFusion's.
pub(crate) fn is_spark_insert(stmt: &ast::Statement) -> bool {
    matches!(stmt, ast::Statement::Insert(ins) if ins.partitioned.is_some() || ins.overwrite)
}

enum PartitionValue {
    Static(String),
    Dynamic,
}

fn literal_text(e: &ast::Expr) -> Result<String> {
    match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => Ok(s.clone()),
            ast::Value::Number(n, _) => Ok(n.clone()),
            ast::Value::Boolean(b) => Ok(b.to_string()),
            other => Err(BowmanError::InvalidValue(format!("partition value {other} must be a literal"))),
        },
        ast::Expr::UnaryOp { op: ast::UnaryOperator::Minus, expr } => Ok(format!("-{}", literal_text(expr)?)),
        ast::Expr::TypedString(t) => literal_text(&ast::Expr::Value(t.value.clone())),
        other => Err(BowmanError::InvalidValue(format!("partition value {other} must be a literal"))),
    }
}

fn partition_spec(exprs: &[ast::Expr]) -> Result<Vec<(String, PartitionValue)>> {
    exprs
        .iter()
        .map(|e| match e {
            ast::Expr::Identifier(i) => Ok((ident_value(i), PartitionValue::Dynamic)),
            ast::Expr::BinaryOp { left, op: ast::BinaryOperator::Eq, right } => match left.as_ref() {
                ast::Expr::Identifier(i) => Ok((ident_value(i), PartitionValue::Static(literal_text(right)?))),
                other => Err(BowmanError::Syntax(format!("expected a partition column name, found {other}"))),
            },
            other => Err(BowmanError::Syntax(format!("expected col or col = 'value' in PARTITION, found {other}"))),
        })
        .collect()
}

pub(crate) async fn execute(session: &Session, stmt: ast::Statement) -> Result<Output> {
    execute_with_mode(session, stmt, None).await
}

/// `overwrite_mode` overrides the session's `partition_overwrite_mode`; OPTIMIZE passes
/// `rewrite`: replace only the partitions it rewrote, and only if nobody wrote them meanwhile.
pub(crate) async fn execute_with_mode(session: &Session, stmt: ast::Statement, overwrite_mode: Option<&str>) -> Result<Output> {
    let plan = plan_with_mode(session, stmt, overwrite_mode).await?;
    session.run_plan(plan).await
}

/// The plan of a Spark-style INSERT (PARTITION, OVERWRITE): a [`crate::plan::write::WriteNode`]
/// for tracked tables, DataFusion's INSERT into a Delta table that replaces what the
/// statement replaces, else DataFusion's INSERT.
pub(crate) async fn plan(session: &Session, stmt: ast::Statement) -> Result<LogicalPlan> {
    plan_with_mode(session, stmt, None).await
}

pub(crate) async fn plan_with_mode(session: &Session, stmt: ast::Statement, overwrite_mode: Option<&str>) -> Result<LogicalPlan> {
    let ast::Statement::Insert(mut ins) = stmt else {
        return Err(BowmanError::Internal("not an INSERT".into()));
    };
    let ast::TableObject::TableName(name) = &ins.table else {
        return Err(BowmanError::NotSupported("INSERT INTO a table function".into()));
    };
    let name = table_name_from(name)?;
    let database = name.database.clone().unwrap_or_else(|| session.current_database());
    let snapshot = session.engine.catalog.snapshot();
    let def = snapshot
        .table(&database, &name.name)
        .cloned()
        .ok_or_else(|| CatalogError::TableNotFound(database.clone(), name.name.clone()))?;
    session.require_table(&def.database, &def.name, "INSERT")?;
    if ins.overwrite {
        // An overwrite removes rows as well.
        session.require_table(&def.database, &def.name, "DELETE")?;
    }
    if def.partition_columns.is_empty() && ins.partitioned.is_some() {
        return Err(BowmanError::InvalidDefinition(format!(
            "{} is not partitioned, so INSERT ... PARTITION does not apply",
            def.qualified_name()
        )));
    }
    let spec = partition_spec(ins.partitioned.as_deref().unwrap_or_default())?;
    for (c, _) in &spec {
        if !def.partition_columns.contains(c) {
            return Err(BowmanError::UndefinedColumn(format!(
                "{c} (PARTITION names a column that is not a partition column of {})",
                def.qualified_name()
            )));
        }
    }
    let Some(source) = ins.source.as_mut() else {
        return Err(BowmanError::Syntax("INSERT needs a query or VALUES".into()));
    };
    // Columns match by position, so `SELECT value, value` is a fine source (as in Spark).
    let mut source = source.clone();
    crate::column_names::distinct_query_names(&mut source);
    let plan = session.plan_query(source).await?;
    // DISTRIBUTE BY and SORT BY organise the writers, not the query: taken off its top, they
    // become the write's exchange and per-writer sort.
    let (plan, organised) = crate::spark::peel_organisation(plan);
    let df = session.ctx.execute_logical_plan(plan).await?;

    // Target columns the query fills, in table order (or in the order of an explicit list).
    let is_static = |c: &str| spec.iter().any(|(n, v)| n == c && matches!(v, PartitionValue::Static(_)));
    let mut targets: Vec<String> = def.columns.iter().map(|c| c.name.clone()).filter(|c| !is_static(c)).collect();
    if !ins.columns.is_empty() {
        let listed: Vec<String> = ins.columns.iter().map(|c| c.to_string().to_lowercase()).collect();
        let dynamic_parts: Vec<String> =
            def.partition_columns.iter().filter(|p| !is_static(p) && !listed.contains(p)).cloned().collect();
        targets = listed.into_iter().chain(dynamic_parts).collect();
    }
    // Qualified, so `SELECT a.id, b.id FROM a JOIN b` stays unambiguous.
    let source_columns: Vec<Column> = df.schema().columns();
    if source_columns.len() != targets.len() {
        return Err(BowmanError::ArityMismatch(format!(
            "cannot write to {}: the query produces {} columns but {} are expected ({})",
            def.qualified_name(),
            source_columns.len(),
            targets.len(),
            targets.join(", ")
        )));
    }

    let mut exprs: Vec<Expr> = Vec::with_capacity(def.columns.len());
    for c in &def.columns {
        let (t, _) = parse_type(&c.data_type)?;
        let value = if let Some((_, PartitionValue::Static(v))) = spec.iter().find(|(n, _)| n == &c.name) {
            cast(lit(ScalarValue::Utf8(Some(v.clone()))), t)
        } else if let Some(pos) = targets.iter().position(|n| n == &c.name) {
            cast(col(source_columns[pos].clone()), t)
        } else {
            // Not in an explicit column list: NULL, as in Spark.
            cast(lit(ScalarValue::Null), t)
        };
        exprs.push(value.alias(&c.name));
    }
    // Organisation over query columns that are not written as such stays on the query, as
    // the planner had it.
    let (organised, unplaced) = match organised {
        Some(o) => match o.onto_columns(&exprs) {
            Some(onto) => (Some(onto), None),
            None => (None, Some(o)),
        },
        None => (None, None),
    };
    let df = match unplaced {
        Some(o) => {
            let plan = crate::spark::Organisation::apply(Some(o), df.into_unoptimized_plan())?;
            datafusion::dataframe::DataFrame::new(session.ctx.state(), plan)
        }
        None => df,
    };
    let df = df.select(exprs)?;

    let provider = session.engine.table_provider(&def).await?;
    let table = datafusion::common::TableReference::partial(def.database.as_str(), def.name.as_str());
    let mode = write_mode(session, &def, ins.overwrite, &spec, overwrite_mode)?;
    if let Some(own_log) = session.engine.own_log_table(&def, &provider) {
        // The table's own log is the commit (Delta's): one new version adding the files and
        // removing what the statement replaces.
        let target = own_log.with_replace(mode);
        let input = crate::spark::Organisation::apply(organised, df.into_unoptimized_plan())?;
        return session.insert_plan(table, target, input);
    }
    crate::commit::check_write_mode(&provider, &mode)?;
    if crate::commit::tracked(&provider).is_some() {
        let (distribute_by, sort_by) = organised.map(|o| (o.distribute_by, o.sort_by)).unwrap_or_default();
        return session.tracked_write_plan(&provider, mode, df.into_unoptimized_plan(), distribute_by, sort_by);
    }
    let input = crate::spark::Organisation::apply(organised, df.into_unoptimized_plan())?;
    session.insert_plan(table, provider, input)
}

/// What an INSERT replaces, with Spark's semantics, for tracked and Delta tables alike:
/// `partition_overwrite_mode` `dynamic` (the default) replaces the partitions the query
/// writes; `static` replaces every partition the PARTITION spec matches (all of them without
/// a spec). A fully static spec replaces its partition either way.
fn write_mode(
    session: &Session,
    def: &bowman_catalog::TableDef,
    overwrite: bool,
    spec: &[(String, PartitionValue)],
    overwrite_mode: Option<&str>,
) -> Result<WriteMode> {
    if !overwrite {
        return Ok(WriteMode::Nothing);
    }
    if overwrite_mode == Some("rewrite") {
        return Ok(WriteMode::Rewrite);
    }
    if def.partition_columns.is_empty() {
        return Ok(WriteMode::All);
    }
    let statics = static_values(spec);
    let fully_static = statics.len() == def.partition_columns.len();
    Ok(match partition_overwrite_mode(session, overwrite_mode)? {
        OverwriteMode::Dynamic => WriteMode::Produced { exact: fully_static.then_some(statics) },
        OverwriteMode::Static if statics.is_empty() => WriteMode::All,
        OverwriteMode::Static => WriteMode::Matching(statics),
    })
}

use crate::settings::PartitionOverwriteMode as OverwriteMode;

/// The mode `requested` by the caller, else the session's `partition_overwrite_mode`.
fn partition_overwrite_mode(session: &Session, requested: Option<&str>) -> Result<OverwriteMode> {
    match requested {
        Some(m) => m.parse().map_err(|_| BowmanError::InvalidValue(format!("overwrite mode '{m}'; use 'dynamic' or 'static'"))),
        None => Ok(session.bowman_settings().partition_overwrite_mode()),
    }
}

/// The `col = 'value'` entries of a PARTITION spec, in spec order.
fn static_values(spec: &[(String, PartitionValue)]) -> Vec<(String, String)> {
    spec.iter()
        .filter_map(|(n, v)| match v {
            PartitionValue::Static(v) => Some((n.clone(), v.clone())),
            PartitionValue::Dynamic => None,
        })
        .collect()
}

