//! Spark's query-organisation clauses on top of DataFusion.
//!
//! sqlparser reads `CLUSTER BY`, `DISTRIBUTE BY` and `SORT BY` into the `Select`; DataFusion
//! plans `DISTRIBUTE BY` (a hash repartition) but not the other two. Before planning, Bowman
//! rewrites them:
//!
//! * `CLUSTER BY x` is `DISTRIBUTE BY x SORT BY x`, as in Spark;
//! * `SORT BY x` becomes a sort of the query's output by `x`. Spark only promises that each
//!   writer's rows are sorted; a full sort keeps that promise (every writer receives a sorted
//!   stream) and DataFusion's sort spills to disk under the memory limit. So
//!   `INSERT ... DISTRIBUTE BY dt SORT BY user_id` writes one file per `dt`, sorted by `user_id`.
//!
//! And Spark's generator syntax, which DataFusion spells `unnest`:
//!
//! * `SELECT explode(arr)` is `SELECT unnest(arr) AS col` (Spark names the column `col`);
//!   `explode_outer(arr)` also gives one NULL row for a NULL or empty array;
//! * `FROM t [AS a] LATERAL VIEW [OUTER] explode(arr) v AS x` becomes
//!   `FROM (SELECT a.*, unnest(arr) AS x FROM t AS a) AS a`, and `v.x` becomes `a.x`.

use datafusion::sql::sqlparser::ast::{self, OrderBy, OrderByExpr, OrderByKind, OrderByOptions, SetExpr};

use crate::error::{BowmanError, Result};

/// Rewrite the Spark clauses of `query` (and of the queries it is made of) in place.
pub(crate) fn rewrite_query(query: &mut ast::Query) -> Result<()> {
    crate::field_access::rewrite_field_access(query);
    if let Some(with) = &mut query.with {
        for cte in &mut with.cte_tables {
            rewrite_query(&mut cte.query)?;
        }
    }
    let mut sort_by = Vec::new();
    rewrite_set_expr(&mut query.body, &mut sort_by)?;
    if !sort_by.is_empty() {
        if query.order_by.is_some() {
            return Err(BowmanError::Syntax(
                "ORDER BY cannot be combined with SORT BY or CLUSTER BY; use one of them".into(),
            ));
        }
        query.order_by = Some(OrderBy { kind: OrderByKind::Expressions(sort_by), interpolate: None });
    }
    Ok(())
}

fn rewrite_set_expr(body: &mut SetExpr, sort_by: &mut Vec<OrderByExpr>) -> Result<()> {
    match body {
        SetExpr::Select(select) => {
            if !select.cluster_by.is_empty() {
                if !select.distribute_by.is_empty() || !select.sort_by.is_empty() {
                    return Err(BowmanError::Syntax(
                        "CLUSTER BY cannot be combined with DISTRIBUTE BY or SORT BY; it means both".into(),
                    ));
                }
                let exprs = std::mem::take(&mut select.cluster_by);
                select.sort_by = exprs
                    .iter()
                    .map(|e| OrderByExpr {
                        expr: e.clone(),
                        options: OrderByOptions { asc: None, nulls_first: None },
                        with_fill: None,
                    })
                    .collect();
                select.distribute_by = exprs;
            }
            sort_by.append(&mut select.sort_by);
            rewrite_generators(select)?;
            for table in &mut select.from {
                rewrite_table_factor(&mut table.relation)?;
                for join in &mut table.joins {
                    rewrite_table_factor(&mut join.relation)?;
                }
            }
        }
        SetExpr::Query(q) => rewrite_query(q)?,
        SetExpr::SetOperation { left, right, .. } => {
            // SORT BY inside a branch of a UNION orders nothing once the branches are merged.
            let mut ignored = Vec::new();
            rewrite_set_expr(left, &mut ignored)?;
            rewrite_set_expr(right, &mut ignored)?;
        }
        _ => {}
    }
    Ok(())
}

/// `explode(e)` / `explode_outer(e)` as an expression DataFusion plans: `unnest(e)`, with a NULL
/// element standing in for a NULL or empty array when outer.
fn generator(expr: &ast::Expr) -> Result<Option<String>> {
    let ast::Expr::Function(f) = expr else { return Ok(None) };
    let name = f.name.to_string().to_ascii_lowercase();
    let outer = match name.as_str() {
        "explode" => false,
        "explode_outer" => true,
        "posexplode" | "posexplode_outer" | "inline" | "inline_outer" | "stack" | "json_tuple" => {
            return Err(BowmanError::NotSupported(format!("the generator {name}; use explode (unnest) instead")));
        }
        _ => return Ok(None),
    };
    let ast::FunctionArguments::List(list) = &f.args else {
        return Err(BowmanError::Syntax(format!("{name} takes one array argument")));
    };
    let [arg] = list.args.as_slice() else { return Err(BowmanError::Syntax(format!("{name} takes one array argument"))) };
    Ok(Some(if outer {
        format!("unnest(CASE WHEN cardinality({arg}) > 0 THEN {arg} ELSE make_array(NULL) END)")
    } else {
        format!("unnest({arg})")
    }))
}

/// Parse SQL text Bowman wrote for a rewrite, with `parse` (an expression, a query...).
fn reparse<T>(
    text: &str,
    parse: impl FnOnce(&mut datafusion::sql::sqlparser::parser::Parser) -> std::result::Result<T, datafusion::sql::sqlparser::parser::ParserError>,
) -> Result<T> {
    let dialect = datafusion::sql::sqlparser::dialect::GenericDialect {};
    datafusion::sql::sqlparser::parser::Parser::new(&dialect)
        .try_with_sql(text)
        .and_then(|mut p| parse(&mut p))
        .map_err(|e| BowmanError::Internal(format!("rewriting into {text}: {e}")))
}

fn parse_expr(text: &str) -> Result<ast::Expr> {
    reparse(text, |p| p.parse_expr())
}

fn rewrite_generators(select: &mut ast::Select) -> Result<()> {
    for item in &mut select.projection {
        match item {
            ast::SelectItem::UnnamedExpr(e) => {
                if let Some(text) = generator(e)? {
                    *item = ast::SelectItem::ExprWithAlias { expr: parse_expr(&text)?, alias: ast::Ident::new("col") };
                }
            }
            ast::SelectItem::ExprWithAlias { expr, .. } => {
                if let Some(text) = generator(expr)? {
                    *expr = parse_expr(&text)?;
                }
            }
            _ => {}
        }
    }
    if select.lateral_views.is_empty() {
        return Ok(());
    }
    if select.from.len() != 1 || !select.from[0].joins.is_empty() {
        return Err(BowmanError::NotSupported(
            "LATERAL VIEW over several tables; join them in a subquery and put LATERAL VIEW after it".into(),
        ));
    }
    for view in std::mem::take(&mut select.lateral_views) {
        let mut call = view.lateral_view.clone();
        if view.outer {
            if let ast::Expr::Function(f) = &mut call {
                if f.name.to_string().eq_ignore_ascii_case("explode") {
                    f.name = ast::ObjectName::from(vec![ast::Ident::new("explode_outer")]);
                }
            }
        }
        let Some(unnest) = generator(&call)? else {
            return Err(BowmanError::NotSupported(format!("LATERAL VIEW {}; Bowman's LATERAL VIEW takes explode", view.lateral_view)));
        };
        let column = match view.lateral_col_alias.as_slice() {
            [] => ast::Ident::new("col"),
            [c] => c.clone(),
            _ => return Err(BowmanError::Syntax("explode of an array gives one column; name one".into())),
        };
        let relation = &select.from[0].relation;
        let (alias, base) = match relation {
            ast::TableFactor::Table { alias: Some(a), .. } => (a.name.clone(), relation.to_string()),
            ast::TableFactor::Table { name, alias: None, .. } => {
                let last = name.0.last().and_then(|p| p.as_ident()).cloned().unwrap_or_else(|| ast::Ident::new("t"));
                (last.clone(), format!("{relation} AS {last}"))
            }
            ast::TableFactor::Derived { alias: Some(a), .. } => (a.name.clone(), relation.to_string()),
            ast::TableFactor::Derived { alias: None, .. } => {
                let a = ast::Ident::new("__lateral_base");
                (a.clone(), format!("{relation} AS {a}"))
            }
            other => return Err(BowmanError::NotSupported(format!("LATERAL VIEW after {other}"))),
        };
        let sql = format!("SELECT * FROM (SELECT {alias}.*, {unnest} AS {column} FROM {base}) AS {alias}");
        let q = reparse(&sql, |p| p.parse_query())?;
        let SetExpr::Select(wrapper) = *q.body else { return Err(BowmanError::Internal(format!("rewriting into {sql}: not a SELECT"))) };
        select.from[0].relation = wrapper.from.into_iter().next().expect("one relation").relation;
        // `v.x` now lives in the wrapper, under the base's name.
        let view_name = view.lateral_view_name.0.last().and_then(|p| p.as_ident()).cloned();
        let _ = ast::visit_expressions_mut(select, |e| {
            if let ast::Expr::CompoundIdentifier(parts) = e {
                if let (Some(v), [q, c]) = (&view_name, parts.as_mut_slice()) {
                    if same_ident(q, v) && same_ident(c, &column) {
                        *q = alias.clone();
                    }
                }
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
    }
    Ok(())
}

fn same_ident(a: &ast::Ident, b: &ast::Ident) -> bool {
    if a.quote_style.is_some() || b.quote_style.is_some() { a.value == b.value } else { a.value.eq_ignore_ascii_case(&b.value) }
}

fn rewrite_table_factor(factor: &mut ast::TableFactor) -> Result<()> {
    if let ast::TableFactor::Derived { subquery, .. } = factor {
        rewrite_query(subquery)?;
    }
    Ok(())
}

/// Apply the rewrite to the queries inside a statement (SELECT, INSERT ... SELECT, EXPLAIN).
pub(crate) fn rewrite_statement(stmt: &mut ast::Statement) -> Result<()> {
    crate::field_access::rewrite_field_access(stmt);
    match stmt {
        ast::Statement::Query(q) => rewrite_query(q),
        ast::Statement::Insert(ins) => match &mut ins.source {
            Some(q) => rewrite_query(q),
            None => Ok(()),
        },
        ast::Statement::Explain { statement, .. } => rewrite_statement(statement),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::{Statement, parse_sql};

    fn rewritten(sql: &str) -> String {
        let Statement::Standard(mut s) = parse_sql(sql).unwrap().remove(0) else { panic!() };
        rewrite_statement(&mut s).unwrap();
        s.to_string()
    }

    #[test]
    fn cluster_and_sort_by() {
        assert_eq!(
            rewritten("SELECT a, dt FROM t DISTRIBUTE BY dt SORT BY a"),
            "SELECT a, dt FROM t DISTRIBUTE BY dt ORDER BY a"
        );
        assert_eq!(rewritten("SELECT a FROM t CLUSTER BY a"), "SELECT a FROM t DISTRIBUTE BY a ORDER BY a");
        assert_eq!(
            rewritten("INSERT INTO x SELECT a FROM (SELECT a FROM t SORT BY a DESC) s"),
            "INSERT INTO x SELECT a FROM (SELECT a FROM t ORDER BY a DESC) s"
        );
    }

    #[test]
    fn explode_is_unnest() {
        assert_eq!(rewritten("SELECT explode(a) FROM t"), "SELECT unnest(a) AS col FROM t");
        assert_eq!(rewritten("SELECT explode(a) AS x FROM t"), "SELECT unnest(a) AS x FROM t");
        assert_eq!(
            rewritten("SELECT e.id, v.tag FROM events e LATERAL VIEW explode(e.tags) v AS tag WHERE v.tag <> 'x'"),
            "SELECT e.id, e.tag FROM (SELECT e.*, unnest(e.tags) AS tag FROM events e) AS e WHERE e.tag <> 'x'"
        );
        assert_eq!(
            rewritten("SELECT tag FROM db.events LATERAL VIEW explode(tags) v AS tag"),
            "SELECT tag FROM (SELECT events.*, unnest(tags) AS tag FROM db.events AS events) AS events"
        );
    }

    #[test]
    fn conflicting_clauses_are_syntax_errors() {
        let Statement::Standard(mut s) = parse_sql("SELECT a FROM t SORT BY a ORDER BY a").unwrap().remove(0) else {
            panic!()
        };
        assert_eq!(rewrite_statement(&mut s).unwrap_err().sqlstate(), "42601");
    }
}

/// A write's DISTRIBUTE BY (which writer gets a row) and SORT BY (the order within each
/// writer), as the query planner left them on top of the query: a hash repartition and a sort.
#[derive(Debug, Clone)]
pub(crate) struct Organisation {
    pub distribute_by: Vec<datafusion::logical_expr::Expr>,
    pub sort_by: Vec<datafusion::logical_expr::SortExpr>,
    partitions: usize,
}

/// Take DISTRIBUTE BY / SORT BY (or ORDER BY without LIMIT) off the top of a query plan, so a
/// write can turn them into its exchange and per-writer sort instead of one global sort.
pub(crate) fn peel_organisation(plan: datafusion::logical_expr::LogicalPlan) -> (datafusion::logical_expr::LogicalPlan, Option<Organisation>) {
    use datafusion::logical_expr::{LogicalPlan, Partitioning, Repartition, Sort};
    let mut plan = plan;
    let mut sort_by = Vec::new();
    if let LogicalPlan::Sort(Sort { expr, input, fetch: None }) = &plan {
        sort_by = expr.clone();
        plan = input.as_ref().clone();
    }
    let mut distribute_by = Vec::new();
    let mut partitions = 0;
    if let LogicalPlan::Repartition(Repartition { input, partitioning_scheme: Partitioning::Hash(exprs, n) }) = &plan {
        distribute_by = exprs.clone();
        partitions = *n;
        plan = input.as_ref().clone();
    }
    if sort_by.is_empty() && distribute_by.is_empty() {
        return (plan, None);
    }
    (plan, Some(Organisation { distribute_by, sort_by, partitions }))
}

impl Organisation {
    /// The same organisation over the columns of a write's projection (`exprs`: each target
    /// column is `CAST(<query column> AS type) AS name`, or a constant). `None` when an
    /// expression reads a query column that is not written as such.
    pub(crate) fn onto_columns(&self, exprs: &[datafusion::logical_expr::Expr]) -> Option<Organisation> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        use datafusion::logical_expr::Expr;
        let target_of = |c: &datafusion::common::Column| {
            exprs.iter().find_map(|e| match e {
                Expr::Alias(a) => match a.expr.as_ref() {
                    Expr::Cast(cast) if matches!(cast.expr.as_ref(), Expr::Column(s) if s == c) => Some(a.name.clone()),
                    Expr::Column(s) if s == c => Some(a.name.clone()),
                    _ => None,
                },
                _ => None,
            })
        };
        let mut missing = false;
        let mut translate = |e: &Expr| {
            e.clone()
                .transform_up(|e| match &e {
                    Expr::Column(c) => match target_of(c) {
                        Some(name) => Ok(Transformed::yes(Expr::Column(datafusion::common::Column::from_name(name)))),
                        None => {
                            missing = true;
                            Ok(Transformed::no(e))
                        }
                    },
                    _ => Ok(Transformed::no(e)),
                })
                .map(|t| t.data)
                .ok()
        };
        let distribute_by = self.distribute_by.iter().map(&mut translate).collect::<Option<Vec<_>>>()?;
        let sort_by = self
            .sort_by
            .iter()
            .map(|s| translate(&s.expr).map(|expr| datafusion::logical_expr::SortExpr { expr, ..s.clone() }))
            .collect::<Option<Vec<_>>>()?;
        if missing {
            return None;
        }
        Some(Organisation { distribute_by, sort_by, partitions: self.partitions })
    }

    /// Put the organisation back on top of `plan` as the query planner had it (a hash
    /// repartition and a full sort), for writes that do not organise their writers.
    pub(crate) fn apply(organisation: Option<Organisation>, plan: datafusion::logical_expr::LogicalPlan) -> Result<datafusion::logical_expr::LogicalPlan> {
        use datafusion::logical_expr::{LogicalPlanBuilder, Partitioning};
        let Some(o) = organisation else { return Ok(plan) };
        let mut builder = LogicalPlanBuilder::from(plan);
        if !o.distribute_by.is_empty() {
            builder = builder.repartition(Partitioning::Hash(o.distribute_by, o.partitions.max(1)))?;
        }
        if !o.sort_by.is_empty() {
            builder = builder.sort(o.sort_by)?;
        }
        Ok(builder.build()?)
    }
}
