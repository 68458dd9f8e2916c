//! Limits on what one statement may ask of the server, checked right after parsing.
//!
//! Planning, optimization, expression evaluation, `Display` and even `Drop` of a statement
//! recurse once per level of nesting, in DataFusion, arrow and sqlparser alike. A statement
//! nested deep enough (5,000 chained `::` casts, a 50,000-term `AND`, a 3,000-arm `UNION ALL`)
//! would overflow a thread's stack, which aborts the whole process. PostgreSQL guards its
//! recursion with `max_stack_depth` and answers 54001 (statement too complex); Bowman measures
//! the statement once, with a walk that stops at the limit, and answers the same way before
//! anything recursive sees it. The worker threads' stacks are sized so that statements within
//! the limits are safe in every build.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, Expr, SetExpr, Visit, Visitor};

use crate::error::{BowmanError, Result};
use crate::parser::Statement;

/// Deepest nesting of expressions (each operand of a chained `+`, `AND`, `||`, `::` or `IS`
/// is one level more) and of queries (subqueries, set operations, CTEs that read the one
/// before) in one statement.
pub const MAX_EXPRESSION_DEPTH: usize = 1000;

/// Largest statement text.
pub const MAX_STATEMENT_BYTES: usize = 32 * 1024 * 1024;

/// Longest identifier.
pub const MAX_IDENTIFIER_BYTES: usize = 1024;

/// Refuse statement texts over [`MAX_STATEMENT_BYTES`].
pub(crate) fn check_statement_size(sql: &str) -> Result<()> {
    if sql.len() > MAX_STATEMENT_BYTES {
        return Err(BowmanError::TooComplex(format!(
            "the statement is {} bytes long; the limit is {MAX_STATEMENT_BYTES} (load large data with COPY or from files)",
            sql.len()
        )));
    }
    Ok(())
}

/// Refuse an identifier over [`MAX_IDENTIFIER_BYTES`].
pub(crate) fn check_identifier(name: &str) -> Result<()> {
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(BowmanError::NameTooLong(format!(
            "identifier \"{}\" is {} bytes long; the limit is {MAX_IDENTIFIER_BYTES}",
            excerpt(name),
            name.len()
        )));
    }
    Ok(())
}

/// Most dimensions a binary array parameter may declare (PostgreSQL's MAXDIM).
pub const MAX_ARRAY_DIMENSIONS: i32 = 6;

/// Check the header of an array value in PostgreSQL's binary format (a Bind parameter) before
/// anything decodes it: the element count it declares must fit in the bytes that follow, each
/// element taking at least its 4-byte length. The decoder (postgres-types' `Vec<T>::from_sql`)
/// reserves room for the declared count up front, so a 40-byte parameter declaring 10^10
/// elements would otherwise abort the whole server on a failed allocation.
pub fn check_binary_array(value: &[u8]) -> std::result::Result<(), String> {
    let int = |at: usize| -> std::result::Result<i32, String> {
        value
            .get(at..at + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| "the binary array value ends inside its header".to_string())
    };
    let dimensions = int(0)?;
    if !(0..=MAX_ARRAY_DIMENSIONS).contains(&dimensions) {
        return Err(format!(
            "a binary array value declares {dimensions} dimensions; at most {MAX_ARRAY_DIMENSIONS} are allowed"
        ));
    }
    let header = 12 + 8 * dimensions as usize;
    let mut elements: u64 = if dimensions == 0 { 0 } else { 1 };
    for d in 0..dimensions as usize {
        let len = int(12 + 8 * d)?;
        if len < 0 {
            return Err(format!("a binary array value declares a dimension of length {len}"));
        }
        elements = elements.saturating_mul(len as u64);
    }
    let room = value.len().saturating_sub(header) as u64 / 4;
    if value.len() < header || elements > room {
        return Err(format!(
            "a binary array value declares {elements} elements but holds {} bytes",
            value.len()
        ));
    }
    Ok(())
}

/// The start of a long text, for error messages.
pub(crate) fn excerpt(text: &str) -> String {
    const KEEP: usize = 60;
    if text.len() <= KEEP {
        return text.to_string();
    }
    let mut end = KEEP;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Refuse a parsed statement nested deeper than [`MAX_EXPRESSION_DEPTH`]. A refused statement
/// is taken apart without recursion (dropping it whole would recurse as deep as it nests).
pub(crate) fn check_statement(stmt: Statement) -> Result<Statement> {
    match measure(&stmt) {
        Ok(()) => Ok(stmt),
        Err(e) => {
            dismantle_statement(stmt);
            Err(e)
        }
    }
}

fn too_deep(what: &str) -> BowmanError {
    BowmanError::TooComplex(format!(
        "{what} nested more than {MAX_EXPRESSION_DEPTH} levels deep; split it up (long OR chains of equalities read better as IN (...), long UNION ALLs as a table)"
    ))
}

/// Statements with more expressions and queries than this are planned off the scheduler's
/// threads (see [`is_large`]).
pub(crate) const LARGE_STATEMENT_NODES: usize = 256;

/// Whether planning `stmt` may take long enough (planning time grows faster than statement
/// size: a 999-term sum or a 1,000-arm UNION ALL takes seconds in a debug build; handing a
/// thread over costs microseconds) that it should not hold a scheduler
/// thread other sessions need.
pub(crate) fn is_large(stmt: &Statement) -> bool {
    let mut depth = Depth::default();
    let _ = walk(stmt, &mut depth);
    depth.nodes > LARGE_STATEMENT_NODES
}

fn measure(stmt: &Statement) -> Result<()> {
    let mut depth = Depth::default();
    match walk(stmt, &mut depth) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(e) => Err(e),
    }
}

fn walk(stmt: &Statement, depth: &mut Depth) -> ControlFlow<BowmanError> {
    let depth = &mut *depth;
    match stmt {
        Statement::Standard(s) => s.visit(depth),
        Statement::CreateTable(ct) => match &ct.query {
            Some(q) => q.visit(depth),
            None => ControlFlow::Continue(()),
        },
        Statement::CreateView(v) => v.query.visit(depth),
        Statement::DeclareCursor { query, .. } => query.visit(depth),
        Statement::Optimize { predicate, sort_by, .. } => match predicate.visit(depth) {
            ControlFlow::Continue(()) => sort_by.visit(depth),
            stop => stop,
        },
        Statement::Explain { statement, .. } => walk(statement, depth),
        _ => ControlFlow::Continue(()),
    }
}

/// Counts nesting while sqlparser's visitor walks the statement, and stops it at the limit
/// (so the walk itself never recurses deeper than the limit through expressions).
#[derive(Default)]
struct Depth {
    current: usize,
    /// Expressions and queries seen.
    nodes: usize,
}

impl Depth {
    fn enter(&mut self, what: &str) -> ControlFlow<BowmanError> {
        self.current += 1;
        self.nodes += 1;
        if self.current > MAX_EXPRESSION_DEPTH { ControlFlow::Break(too_deep(what)) } else { ControlFlow::Continue(()) }
    }
}

impl Visitor for Depth {
    type Break = BowmanError;

    fn pre_visit_query(&mut self, query: &ast::Query) -> ControlFlow<Self::Break> {
        self.enter("queries")?;
        // A chain of set operations is a left-deep tree that sqlparser's visitor walks without
        // stopping at queries: measure its spine here, without recursion.
        let spine = set_operation_depth(&query.body);
        self.nodes += spine;
        if self.current + spine > MAX_EXPRESSION_DEPTH {
            return ControlFlow::Break(too_deep("set operations (UNION, INTERSECT, EXCEPT)"));
        }
        // Each CTE that reads an earlier one nests the plan one level deeper.
        if let Some(with) = &query.with {
            if self.current + with.cte_tables.len() > MAX_EXPRESSION_DEPTH {
                return ControlFlow::Break(too_deep("common table expressions (WITH)"));
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &ast::Query) -> ControlFlow<Self::Break> {
        self.current -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<Self::Break> {
        self.enter("expressions")
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<Self::Break> {
        self.current -= 1;
        ControlFlow::Continue(())
    }
}

/// The longest chain of set operations below `body`, following both sides without recursion.
fn set_operation_depth(body: &SetExpr) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(body, 0usize)];
    while let Some((node, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        if let SetExpr::SetOperation { left, right, .. } = node {
            pending.push((left, depth + 1));
            pending.push((right, depth + 1));
        }
    }
    deepest
}

/// Take a refused statement apart iteratively.
fn dismantle_statement(stmt: Statement) {
    let mut exprs = Vec::new();
    let mut bodies = Vec::new();
    let mut queries: Vec<Box<ast::Query>> = Vec::new();
    let stmt = match stmt {
        // EXPLAIN holds one statement of Bowman's own, which holds no EXPLAIN.
        Statement::Explain { statement, .. } => *statement,
        other => other,
    };
    match stmt {
        Statement::Standard(s) => match *s {
            ast::Statement::Query(q) => queries.push(q),
            ast::Statement::Insert(i) => {
                if let Some(q) = i.source {
                    queries.push(q);
                }
            }
            ast::Statement::Explain { statement, .. } => {
                if let ast::Statement::Query(q) = *statement {
                    queries.push(q);
                }
            }
            _ => {}
        },
        Statement::CreateTable(ct) => queries.extend(ct.query),
        Statement::CreateView(v) => queries.push(v.query),
        Statement::DeclareCursor { query, .. } => queries.push(query),
        Statement::Optimize { predicate, sort_by, .. } => {
            exprs.extend(predicate);
            exprs.extend(sort_by);
        }
        _ => {}
    }
    loop {
        if let Some(mut q) = queries.pop() {
            let body = std::mem::replace(&mut q.body, Box::new(SetExpr::Values(empty_values())));
            bodies.push(body);
            if let Some(with) = q.with.take() {
                queries.extend(with.cte_tables.into_iter().map(|c| c.query));
            }
        } else if let Some(body) = bodies.pop() {
            match *body {
                SetExpr::SetOperation { left, right, .. } => {
                    bodies.push(left);
                    bodies.push(right);
                }
                SetExpr::Query(q) => queries.push(q),
                SetExpr::Select(mut select) => {
                    for item in std::mem::take(&mut select.projection) {
                        match item {
                            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => exprs.push(e),
                            _ => {}
                        }
                    }
                    exprs.extend(select.selection.take());
                    exprs.extend(select.having.take());
                }
                other => drop(other),
            }
        } else if let Some(e) = exprs.pop() {
            dismantle_expr(e, &mut exprs, &mut queries);
        } else {
            break;
        }
    }
}

fn empty_values() -> ast::Values {
    ast::Values { explicit_row: false, value_keyword: false, rows: vec![] }
}

/// Move the operands of the recursive expression forms onto `exprs` (and subqueries onto
/// `queries`) so that dropping `e` itself is shallow.
fn dismantle_expr(e: Expr, exprs: &mut Vec<Expr>, queries: &mut Vec<Box<ast::Query>>) {
    match e {
        Expr::BinaryOp { left, right, .. } => {
            exprs.push(*left);
            exprs.push(*right);
        }
        Expr::UnaryOp { expr, .. }
        | Expr::Nested(expr)
        | Expr::Cast { expr, .. }
        | Expr::IsNull(expr)
        | Expr::IsNotNull(expr)
        | Expr::IsTrue(expr)
        | Expr::IsNotTrue(expr)
        | Expr::IsFalse(expr)
        | Expr::IsNotFalse(expr)
        | Expr::IsUnknown(expr)
        | Expr::IsNotUnknown(expr)
        | Expr::Collate { expr, .. } => exprs.push(*expr),
        Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
            exprs.push(*a);
            exprs.push(*b);
        }
        Expr::Like { expr, pattern, .. } | Expr::ILike { expr, pattern, .. } => {
            exprs.push(*expr);
            exprs.push(*pattern);
        }
        Expr::Between { expr, low, high, .. } => {
            exprs.push(*expr);
            exprs.push(*low);
            exprs.push(*high);
        }
        Expr::InList { expr, list, .. } => {
            exprs.push(*expr);
            exprs.extend(list);
        }
        Expr::Subquery(q) | Expr::Exists { subquery: q, .. } => queries.push(q),
        Expr::InSubquery { expr, subquery, .. } => {
            exprs.push(*expr);
            queries.push(subquery);
        }
        Expr::Case { operand, conditions, else_result, .. } => {
            exprs.extend(operand.map(|o| *o));
            for when in conditions {
                exprs.push(when.condition);
                exprs.push(when.result);
            }
            exprs.extend(else_result.map(|e| *e));
        }
        Expr::Function(mut f) => {
            if let ast::FunctionArguments::List(list) = std::mem::replace(&mut f.args, ast::FunctionArguments::None) {
                for arg in list.args {
                    match arg {
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e))
                        | ast::FunctionArg::Named { arg: ast::FunctionArgExpr::Expr(e), .. }
                        | ast::FunctionArg::ExprNamed { arg: ast::FunctionArgExpr::Expr(e), .. } => exprs.push(e),
                        _ => {}
                    }
                }
            }
        }
        other => drop(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(sql: &str) -> Option<String> {
        crate::parser::parse_sql(sql).err().map(|e| e.code())
    }

    fn array(dims: &[i32], elements: &[i32]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend((dims.len() as i32).to_be_bytes());
        v.extend(0i32.to_be_bytes());
        v.extend(23u32.to_be_bytes());
        for d in dims {
            v.extend(d.to_be_bytes());
            v.extend(1i32.to_be_bytes());
        }
        for e in elements {
            v.extend(4i32.to_be_bytes());
            v.extend(e.to_be_bytes());
        }
        v
    }

    #[test]
    fn binary_arrays_must_hold_what_they_declare() {
        assert!(check_binary_array(&array(&[3], &[1, 2, 3])).is_ok());
        assert!(check_binary_array(&array(&[], &[])).is_ok());
        assert!(check_binary_array(&array(&[2, 2], &[1, 2, 3, 4])).is_ok());
        // The fuzzer's find: a short value declaring billions of elements.
        assert!(check_binary_array(&array(&[100_000, 100_000], &[1])).is_err());
        assert!(check_binary_array(&array(&[i32::MAX, i32::MAX, i32::MAX], &[])).is_err());
        assert!(check_binary_array(&array(&[-1], &[])).is_err());
        assert!(check_binary_array(&array(&[1; 7], &[1])).is_err());
        assert!(check_binary_array(&[0, 0, 0]).is_err());
        // Three 8-byte elements hold room for at most six.
        assert!(check_binary_array(&array(&[7], &[1, 2, 3])).is_err());
    }

    #[test]
    fn deep_statements_are_refused_and_shallow_ones_pass() {
        let plus = format!("SELECT {}", vec!["1"; 5000].join(" + "));
        assert_eq!(code(&plus).as_deref(), Some("54001"));
        let casts = format!("SELECT 1{}", "::BIGINT".repeat(5000));
        assert_eq!(code(&casts).as_deref(), Some("54001"));
        let union = vec!["SELECT 1"; 3000].join(" UNION ALL ");
        assert_eq!(code(&union).as_deref(), Some("54001"));
        let ctes = (1..2000).map(|i| format!("c{i} AS (SELECT * FROM c{})", i - 1)).collect::<Vec<_>>().join(", ");
        assert_eq!(code(&format!("WITH c0 AS (SELECT 1 AS x), {ctes} SELECT * FROM c1999")).as_deref(), Some("54001"));
        let fine = format!("SELECT {}", vec!["1"; 500].join(" + "));
        assert_eq!(code(&fine), None);
        assert_eq!(code(&vec!["SELECT 1"; 200].join(" UNION ALL ")), None);
    }

    #[test]
    fn long_identifiers_are_refused() {
        let name = "x".repeat(MAX_IDENTIFIER_BYTES + 1);
        assert_eq!(code(&format!("SELECT 1 AS {name}")).as_deref(), Some("42622"));
        assert_eq!(code(&format!("SELECT 1 AS \"{name}\"")).as_deref(), Some("42622"));
    }
}

/// Most bytes one call of a string-building function (`lpad`, `rpad`, `repeat`) may produce
/// for one batch of rows.
pub const MAX_BUILT_BYTES: usize = 256 * 1024 * 1024;

/// `lpad`, `rpad` and `repeat` that refuse (54000) to build more than [`MAX_BUILT_BYTES`]
/// instead of allocating whatever a length argument asks for (`lpad('x', 2147483647)` would
/// take seconds and gigabytes, or abort the server when memory runs out).
pub(crate) fn size_checked_functions(
    registry: &dyn datafusion::execution::FunctionRegistry,
) -> Vec<datafusion::logical_expr::ScalarUDF> {
    let mut out = Vec::new();
    for (name, kind) in [("lpad", Built::Pad), ("rpad", Built::Pad), ("repeat", Built::Repeat)] {
        if let Ok(inner) = registry.udf(name) {
            out.push(datafusion::logical_expr::ScalarUDF::new_from_impl(SizeChecked { inner, kind }));
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Built {
    /// `(string, length [, fill])`: `length` characters per row.
    Pad,
    /// `(string, count)`: the string `count` times per row.
    Repeat,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SizeChecked {
    inner: std::sync::Arc<datafusion::logical_expr::ScalarUDF>,
    kind: Built,
}

/// The integer values of an argument (`None` for NULLs and non-integer types).
fn integers(arg: &datafusion::logical_expr::ColumnarValue, rows: usize) -> Vec<Option<i64>> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::logical_expr::ColumnarValue;
    let array = match arg {
        ColumnarValue::Scalar(s) => match s.to_array_of_size(1) {
            Ok(a) => a,
            Err(_) => return vec![],
        },
        ColumnarValue::Array(a) => a.clone(),
    };
    let Ok(array) = datafusion::arrow::compute::cast(&array, &datafusion::arrow::datatypes::DataType::Int64) else {
        return vec![];
    };
    let ints = array.as_primitive::<Int64Type>();
    let values: Vec<Option<i64>> = (0..ints.len()).map(|i| ints.is_valid(i).then(|| ints.value(i))).collect();
    match arg {
        ColumnarValue::Scalar(_) => vec![values.first().copied().flatten(); rows.max(1)],
        ColumnarValue::Array(_) => values,
    }
}

/// Byte lengths of a string argument, per row.
fn string_lengths(arg: &datafusion::logical_expr::ColumnarValue, rows: usize) -> Vec<usize> {
    use datafusion::arrow::array::Array;
    use datafusion::logical_expr::ColumnarValue;
    let array = match arg {
        ColumnarValue::Scalar(s) => match s.to_array_of_size(1) {
            Ok(a) => a,
            Err(_) => return vec![0; rows],
        },
        ColumnarValue::Array(a) => a.clone(),
    };
    let Ok(strings) = datafusion::arrow::compute::cast(&array, &datafusion::arrow::datatypes::DataType::Utf8) else {
        return vec![0; rows];
    };
    let strings = datafusion::arrow::array::AsArray::as_string::<i32>(&strings);
    let lengths: Vec<usize> = (0..strings.len()).map(|i| if strings.is_valid(i) { strings.value(i).len() } else { 0 }).collect();
    match arg {
        ColumnarValue::Scalar(_) => vec![lengths.first().copied().unwrap_or(0); rows.max(1)],
        ColumnarValue::Array(_) => lengths,
    }
}

impl SizeChecked {
    fn check(&self, args: &datafusion::logical_expr::ScalarFunctionArgs) -> datafusion::error::Result<()> {
        let rows = args.number_rows;
        let total: u128 = match self.kind {
            Built::Pad => {
                let Some(length) = args.args.get(1) else { return Ok(()) };
                integers(length, rows).iter().map(|n| n.unwrap_or(0).max(0) as u128).sum()
            }
            Built::Repeat => {
                let (Some(text), Some(count)) = (args.args.first(), args.args.get(1)) else { return Ok(()) };
                let lengths = string_lengths(text, rows);
                integers(count, rows)
                    .iter()
                    .zip(lengths.iter().chain(std::iter::repeat(&0)))
                    .map(|(n, len)| n.unwrap_or(0).max(0) as u128 * *len as u128)
                    .sum()
            }
        };
        if total > MAX_BUILT_BYTES as u128 {
            return Err(datafusion::error::DataFusionError::External(Box::new(BowmanError::ValueTooLarge(format!(
                "{}() would build {total} bytes; the limit is {MAX_BUILT_BYTES} bytes per batch of rows",
                self.inner.name()
            )))));
        }
        Ok(())
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for SizeChecked {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[datafusion::arrow::datatypes::DataType]) -> datafusion::error::Result<datafusion::arrow::datatypes::DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> datafusion::error::Result<datafusion::arrow::datatypes::FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[datafusion::arrow::datatypes::DataType]) -> datafusion::error::Result<Vec<datafusion::arrow::datatypes::DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: datafusion::logical_expr::ScalarFunctionArgs) -> datafusion::error::Result<datafusion::logical_expr::ColumnarValue> {
        self.check(&args)?;
        self.inner.invoke_with_args(args)
    }
}
