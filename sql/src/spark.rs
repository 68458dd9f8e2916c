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

use datafusion::sql::sqlparser::ast::{self, OrderBy, OrderByExpr, OrderByKind, OrderByOptions, SetExpr};

use crate::error::{BowmanError, Result};

/// Rewrite the Spark clauses of `query` (and of the queries it is made of) in place.
pub(crate) fn rewrite_query(query: &mut ast::Query) -> Result<()> {
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

fn rewrite_table_factor(factor: &mut ast::TableFactor) -> Result<()> {
    if let ast::TableFactor::Derived { subquery, .. } = factor {
        rewrite_query(subquery)?;
    }
    Ok(())
}

/// Apply the rewrite to the queries inside a statement (SELECT, INSERT ... SELECT, EXPLAIN).
pub(crate) fn rewrite_statement(stmt: &mut ast::Statement) -> Result<()> {
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
    fn conflicting_clauses_are_syntax_errors() {
        let Statement::Standard(mut s) = parse_sql("SELECT a FROM t SORT BY a ORDER BY a").unwrap().remove(0) else {
            panic!()
        };
        assert_eq!(rewrite_statement(&mut s).unwrap_err().sqlstate(), "42601");
    }
}
