//! Result columns with the same name, as PostgreSQL allows them (`SELECT version(), version()`
//! returns two columns named `version`).
//!
//! DataFusion requires the expressions of a projection to have distinct names, so before
//! planning, repeated unaliased expressions of a select list get aliases: PostgreSQL's name for
//! the column, made distinct with an invisible suffix ([`MARK`] and a counter). The suffix is
//! removed from the result's schema when rows leave the session, so clients see the names
//! PostgreSQL would send.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{self, Expr, SelectItem, SetExpr, VisitMut, VisitorMut};

/// Separates a column's name from the counter that keeps repeated names distinct inside the
/// plan. PostgreSQL identifiers cannot contain NUL, so no user-written name has it.
const MARK: char = '\u{0}';

/// Visits every query, renaming repeated select-list names.
struct Renamer;

impl VisitorMut for Renamer {
    type Break = ();
    fn pre_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<()> {
        rename_body(query.body.as_mut());
        ControlFlow::Continue(())
    }
}

/// Give repeated unaliased select-list expressions distinct aliases (every query of `stmt`).
pub(crate) fn distinct_select_names(stmt: &mut ast::Statement) {
    let _ = stmt.visit(&mut Renamer);
}

/// The same for one query (an INSERT's source, whose columns match the table's by position).
pub(crate) fn distinct_query_names(query: &mut ast::Query) {
    let _ = query.visit(&mut Renamer);
}

fn rename_body(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => rename_select(&mut select.projection),
        // The left side names a set operation's columns.
        SetExpr::SetOperation { left, .. } => rename_body(left.as_mut()),
        _ => {}
    }
}

fn rename_select(items: &mut [SelectItem]) {
    let texts: Vec<Option<String>> = items
        .iter()
        .map(|i| match i {
            SelectItem::UnnamedExpr(e) => Some(e.to_string()),
            _ => None,
        })
        .collect();
    let repeated = |i: usize| texts[i].as_ref().is_some_and(|t| texts.iter().filter(|o| o.as_ref() == Some(t)).count() > 1);
    if !(0..items.len()).any(repeated) {
        return;
    }
    let mut seen: Vec<(String, usize)> = Vec::new();
    for i in 0..items.len() {
        if !repeated(i) {
            continue;
        }
        let SelectItem::UnnamedExpr(expr) = &items[i] else { continue };
        let name = postgres_name(expr);
        let n = match seen.iter_mut().find(|(s, _)| *s == name) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                seen.push((name.clone(), 1));
                1
            }
        };
        let alias = if n == 1 { name } else { format!("{name}{MARK}{n}") };
        items[i] = SelectItem::ExprWithAlias { expr: expr.clone(), alias: ast::Ident::with_quote('"', alias) };
    }
}

/// The name PostgreSQL gives an unaliased select-list expression (its `FigureColname`): a
/// column's name, a function's name, a cast's inner name or else its type, `case`, and
/// `?column?` for the rest.
fn postgres_name(expr: &Expr) -> String {
    fn name(expr: &Expr) -> Option<String> {
        match expr {
            Expr::Identifier(i) => Some(crate::parser::ident_value(i)),
            Expr::CompoundIdentifier(parts) => parts.last().map(crate::parser::ident_value),
            Expr::Function(f) => f.name.0.last().and_then(|p| p.as_ident()).map(crate::parser::ident_value),
            Expr::Nested(e) => name(e),
            Expr::Cast { expr, data_type, .. } => name(expr).or_else(|| {
                let t = data_type.to_string().to_ascii_lowercase();
                Some(t.split('(').next().unwrap_or(&t).trim().to_string())
            }),
            Expr::Case { .. } => Some("case".into()),
            _ => None,
        }
    }
    name(expr).unwrap_or_else(|| "?column?".into())
}

/// `schema` with the counters [`distinct_select_names`] added removed; `None` when it had none.
pub(crate) fn client_schema(schema: &Schema) -> Option<SchemaRef> {
    if !schema.fields().iter().any(|f| f.name().contains(MARK)) {
        return None;
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.name().split_once(MARK) {
            Some((name, _)) => f.as_ref().clone().with_name(name),
            None => f.as_ref().clone(),
        })
        .collect();
    Some(Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())))
}

/// Rows under their client-facing column names (see [`client_schema`]).
pub(crate) fn client_rows(
    schema: SchemaRef,
    stream: datafusion::execution::SendableRecordBatchStream,
) -> (SchemaRef, datafusion::execution::SendableRecordBatchStream) {
    use futures::StreamExt;
    let Some(schema) = client_schema(&schema) else { return (schema, stream) };
    let renamed = stream.map(|batch| {
        let batch = batch?;
        let Some(names) = client_schema(batch.schema_ref()) else { return Ok(batch) };
        Ok(datafusion::arrow::array::RecordBatch::try_new(names, batch.columns().to_vec())?)
    });
    (schema.clone(), Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, renamed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renamed(sql: &str) -> String {
        let dialect = datafusion::sql::sqlparser::dialect::GenericDialect {};
        let mut stmt = datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, sql).unwrap().pop().unwrap();
        distinct_select_names(&mut stmt);
        stmt.to_string().replace(MARK, "#")
    }

    #[test]
    fn repeated_expressions_get_postgres_names() {
        assert_eq!(renamed("SELECT version(), version()"), "SELECT version() AS \"version\", version() AS \"version#2\"");
        assert_eq!(renamed("SELECT a, b FROM t"), "SELECT a, b FROM t");
        assert_eq!(renamed("SELECT 1, 1, x, 2"), "SELECT 1 AS \"?column?\", 1 AS \"?column?#2\", x, 2");
        assert_eq!(
            renamed("SELECT * FROM (SELECT CAST(a AS INT), CAST(a AS INT) FROM t) s"),
            "SELECT * FROM (SELECT CAST(a AS INT) AS \"a\", CAST(a AS INT) AS \"a#2\" FROM t) s"
        );
        let schema = Schema::new(vec![
            Field::new("version", datafusion::arrow::datatypes::DataType::Utf8, true),
            Field::new(format!("version{MARK}2"), datafusion::arrow::datatypes::DataType::Utf8, true),
        ]);
        let names: Vec<String> = client_schema(&schema).unwrap().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["version", "version"]);
    }
}
