//! Parameters of statements Bowman runs itself instead of through a DataFusion plan prepared
//! at Parse (Spark's `INSERT OVERWRITE ... PARTITION`, `INSERT ... DISTRIBUTE BY`): the `$n`
//! placeholders a client bound (psycopg 3, as Airflow 3's postgres provider uses it, binds
//! server-side) become the bound values as literals before the statement runs.

use std::ops::ControlFlow;

use datafusion::common::{ParamValues, ScalarValue};
use datafusion::sql::sqlparser::ast::{self, Expr, Value};

use crate::error::{BowmanError, Result};
use crate::parser::Statement;

/// `stmt` with every `$n` replaced by the value bound to it.
pub(crate) fn bind_literals(stmt: Statement, params: &ParamValues) -> Result<Statement> {
    let empty = match params {
        ParamValues::List(l) => l.is_empty(),
        ParamValues::Map(m) => m.is_empty(),
    };
    let Statement::Standard(mut s) = stmt else { return Ok(stmt) };
    if empty {
        return Ok(Statement::Standard(s));
    }
    let mut failed = None;
    let _ = ast::visit_expressions_mut(&mut *s, |e| {
        if let Expr::Value(v) = e {
            if let Value::Placeholder(id) = &v.value {
                match params.get_placeholders_with_values(id) {
                    Ok(bound) => *e = literal(&bound.value),
                    Err(err) => {
                        failed = Some(err);
                        return ControlFlow::Break(());
                    }
                }
            }
        }
        ControlFlow::Continue(())
    });
    match failed {
        Some(e) => Err(BowmanError::from(e)),
        None => Ok(Statement::Standard(s)),
    }
}

/// A bound value as SQL: numbers and booleans as themselves, everything else as a string
/// literal that the statement's own types coerce (`dt = '2018-03-05'`).
fn literal(v: &ScalarValue) -> Expr {
    use ScalarValue as S;
    let value = if v.is_null() {
        Value::Null
    } else {
        match v {
            S::Boolean(Some(b)) => Value::Boolean(*b),
            S::Int8(_) | S::Int16(_) | S::Int32(_) | S::Int64(_) | S::UInt8(_) | S::UInt16(_) | S::UInt32(_) | S::UInt64(_) => {
                Value::Number(v.to_string(), false)
            }
            S::Decimal128(..) | S::Decimal256(..) => Value::Number(v.to_string(), false),
            S::Float32(Some(f)) if f.is_finite() => Value::Number(v.to_string(), false),
            S::Float64(Some(f)) if f.is_finite() => Value::Number(v.to_string(), false),
            S::Utf8(Some(s)) | S::LargeUtf8(Some(s)) | S::Utf8View(Some(s)) => Value::SingleQuotedString(s.clone()),
            other => Value::SingleQuotedString(other.to_string()),
        }
    };
    Expr::Value(value.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_literals() {
        let stmt = crate::parser::parse_sql("INSERT OVERWRITE TABLE t PARTITION (dt) SELECT a, dt FROM s WHERE dt = $1 AND n > $2")
            .unwrap()
            .remove(0);
        let params = ParamValues::List(vec![
            ScalarValue::Utf8(Some("2018-03-05".into())).into(),
            ScalarValue::Int64(Some(-3)).into(),
        ]);
        let Statement::Standard(s) = bind_literals(stmt, &params).unwrap() else { panic!() };
        assert!(s.to_string().ends_with("WHERE dt = '2018-03-05' AND n > -3"), "{s}");
        let stmt = crate::parser::parse_sql("INSERT INTO t SELECT $3").unwrap().remove(0);
        assert!(bind_literals(stmt, &params).is_err());
    }
}
