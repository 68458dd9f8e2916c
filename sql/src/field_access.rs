//! Field access on any expression, as Spark writes it: `geodata(lon, lat).city`,
//! `from_json(s, 'a INT, b STRING').a`, `f(x).a.b`, `arr[1].name`.
//!
//! sqlparser reads `f(x).city` as a compound field access whose root is the call and whose
//! chain is `.city` (an identifier). DataFusion's planner takes the leading identifiers of a
//! chain as a column path (`t.col.field`), but after a non-identifier root (a call, a
//! subscript) it only plans a field name written as a string (`f(x).'city'`), the same
//! `get_field` as `f(x)['city']`. Before planning, Bowman rewrites each identifier that follows
//! such a root into that string form, folded to lower case unless quoted, as column names are.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, AccessExpr, Expr, Value, VisitMut};

/// Rewrite every field access after a non-identifier root inside `node` (a statement, a query).
pub(crate) fn rewrite_field_access<N: VisitMut>(node: &mut N) {
    let _ = ast::visit_expressions_mut(node, |e| {
        if let Expr::CompoundFieldAccess { root, access_chain } = e {
            // After an identifier root, the leading identifiers name a column (and its table);
            // DataFusion resolves those itself.
            let first = match root.as_ref() {
                Expr::Identifier(_) | Expr::CompoundIdentifier(_) => access_chain
                    .iter()
                    .position(|a| !matches!(a, AccessExpr::Dot(Expr::Identifier(_))))
                    .unwrap_or(access_chain.len()),
                _ => 0,
            };
            for access in access_chain.iter_mut().skip(first) {
                if let AccessExpr::Dot(Expr::Identifier(ident)) = access {
                    let name = if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_lowercase() };
                    *access = AccessExpr::Dot(Expr::Value(Value::SingleQuotedString(name).with_span(ident.span)));
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::{Statement, parse_sql};

    fn rewritten(sql: &str) -> String {
        let Statement::Standard(mut s) = parse_sql(sql).unwrap().remove(0) else { panic!("not a standard statement") };
        rewrite_field_access(&mut *s);
        s.to_string()
    }

    #[test]
    fn fields_of_calls_become_named_field_accesses() {
        assert_eq!(rewritten("SELECT geodata(lon, lat).city FROM t"), "SELECT geodata(lon, lat).'city' FROM t");
        assert_eq!(rewritten("SELECT f(x).A.\"B\" FROM t"), "SELECT f(x).'a'.'B' FROM t");
        assert_eq!(
            rewritten("SELECT f(x).a FROM t WHERE f(x).b > 1 GROUP BY f(x).a"),
            "SELECT f(x).'a' FROM t WHERE f(x).'b' > 1 GROUP BY f(x).'a'"
        );
        // Column paths are left to DataFusion; a field after a subscript is rewritten.
        assert_eq!(rewritten("SELECT t.s.a, s.a FROM t"), "SELECT t.s.a, s.a FROM t");
        assert_eq!(rewritten("SELECT t.arr[1].name FROM t"), "SELECT t.arr[1].'name' FROM t");
        // Applying the rewrite twice changes nothing more.
        let Statement::Standard(mut s) = parse_sql("SELECT f(x).a.b FROM t").unwrap().remove(0) else { panic!() };
        rewrite_field_access(&mut *s);
        let once = s.to_string();
        rewrite_field_access(&mut *s);
        assert_eq!(s.to_string(), once);
    }
}
