//! Which filters Cassandra runs, by the Spark Cassandra Connector's rules: `=`/`IN` on every
//! partition-key column become direct partition reads; with the partition key fixed, `=` on a
//! prefix of the clustering columns and a range on the next one are pushed too. Everything else
//! is left to DataFusion; nothing ever needs ALLOW FILTERING.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, Operator};
use scylla::value::CqlValue;

use crate::CassandraTable;
use crate::options::quote_ident;
use crate::types::to_cql;

#[derive(Debug, Clone)]
pub enum ScanKind {
    /// the cross product of the partition-key values: one direct read each
    Partitions { keys: Vec<Vec<CqlValue>> },
    TokenRanges,
}

#[derive(Debug, Clone)]
pub struct ScanPlan {
    /// indices of the filters Cassandra applies exactly
    pub pushed: Vec<usize>,
    pub kind: ScanKind,
    /// `WHERE` text after the partition key (clustering restrictions), with `?` markers
    pub clustering: Vec<(String, &'static str)>,
    pub clustering_values: Vec<CqlValue>,
}

enum Pred<'a> {
    Eq(&'a str, &'a ScalarValue),
    In(&'a str, Vec<&'a ScalarValue>),
    Range(&'a str, &'static str, &'a ScalarValue),
}

fn literal(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v),
        _ => None,
    }
}

fn column(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        _ => None,
    }
}

fn classify(e: &Expr) -> Option<Pred<'_>> {
    match e {
        Expr::BinaryExpr(b) if b.op != Operator::Or => {
            let (col, op, v) = match (column(&b.left), literal(&b.right), column(&b.right), literal(&b.left)) {
                (Some(c), Some(v), _, _) => (c, b.op, v),
                (_, _, Some(c), Some(v)) => (c, b.op.swap()?, v),
                _ => return None,
            };
            if v.is_null() {
                return None;
            }
            match op {
                Operator::Eq => Some(Pred::Eq(col, v)),
                Operator::Lt => Some(Pred::Range(col, "<", v)),
                Operator::LtEq => Some(Pred::Range(col, "<=", v)),
                Operator::Gt => Some(Pred::Range(col, ">", v)),
                Operator::GtEq => Some(Pred::Range(col, ">=", v)),
                _ => None,
            }
        }
        // DataFusion writes a short IN list as `c = a OR c = b`
        Expr::BinaryExpr(b) if b.op == Operator::Or => {
            let mut col = None;
            let mut vals = Vec::new();
            for side in [&b.left, &b.right] {
                let (c, vs) = match classify(side)? {
                    Pred::Eq(c, v) => (c, vec![v]),
                    Pred::In(c, vs) => (c, vs),
                    Pred::Range(..) => return None,
                };
                if col.is_some_and(|x| x != c) {
                    return None;
                }
                col = Some(c);
                vals.extend(vs);
            }
            Some(Pred::In(col?, vals))
        }
        Expr::InList(l) if !l.negated => {
            let c = column(&l.expr)?;
            let vs = l.list.iter().map(literal).collect::<Option<Vec<_>>>()?;
            if vs.is_empty() || vs.iter().any(|v| v.is_null()) {
                return None;
            }
            Some(Pred::In(c, vs))
        }
        _ => None,
    }
}

pub fn plan(t: &CassandraTable, filters: &[&Expr]) -> ScanPlan {
    let token = ScanPlan { pushed: vec![], kind: ScanKind::TokenRanges, clustering: vec![], clustering_values: vec![] };
    let preds: Vec<Option<Pred>> = filters.iter().map(|f| classify(f)).collect();
    let cql = |col: &str, v: &ScalarValue| -> Option<CqlValue> { to_cql(v, t.column_type(col)?, col).ok().flatten() };
    let mut pushed = Vec::new();
    let mut keys: Vec<Vec<CqlValue>> = Vec::new();
    for pk in &t.partition_key {
        let mut found = None;
        for (i, p) in preds.iter().enumerate() {
            let vals = match p {
                Some(Pred::Eq(c, v)) if c == pk => cql(c, v).map(|v| vec![v]),
                Some(Pred::In(c, vs)) if c == pk => vs.iter().map(|v| cql(c, v)).collect::<Option<Vec<_>>>(),
                _ => None,
            };
            if let Some(mut vals) = vals {
                // IN (1, 1) reads partition 1 once
                let mut seen = std::collections::HashSet::new();
                vals.retain(|v| seen.insert(format!("{v:?}")));
                found = Some((i, vals));
                break;
            }
        }
        let Some((i, vals)) = found else { return token };
        pushed.push(i);
        keys.push(vals);
    }
    // the cross product, guarded
    let count = keys.iter().try_fold(1usize, |acc, k| acc.checked_mul(k.len()));
    match count {
        Some(n) if n <= t.opts.in_limit => {}
        _ => return token,
    }
    let mut product: Vec<Vec<CqlValue>> = vec![vec![]];
    for k in &keys {
        product = product.into_iter().flat_map(|prefix| k.iter().map(move |v| [prefix.clone(), vec![v.clone()]].concat())).collect();
    }
    let mut clustering = Vec::new();
    let mut clustering_values = Vec::new();
    'ck: for ck in &t.clustering_key {
        for (i, p) in preds.iter().enumerate() {
            if let Some(Pred::Eq(c, v)) = p
                && c == ck
                && let Some(v) = cql(c, v)
            {
                pushed.push(i);
                clustering.push((quote_ident(ck), "="));
                clustering_values.push(v);
                continue 'ck;
            }
        }
        // a range on the next clustering column ends the prefix: at most one lower, one upper bound
        let (mut lower, mut upper) = (false, false);
        for (i, p) in preds.iter().enumerate() {
            if let Some(Pred::Range(c, op, v)) = p
                && c == ck
            {
                let is_lower = op.starts_with('>');
                if (is_lower && lower) || (!is_lower && upper) {
                    continue;
                }
                let Some(v) = cql(c, v) else { continue };
                if is_lower { lower = true } else { upper = true }
                pushed.push(i);
                clustering.push((quote_ident(ck), op));
                clustering_values.push(v);
            }
        }
        break;
    }
    pushed.sort();
    ScanPlan { pushed, kind: ScanKind::Partitions { keys: product }, clustering, clustering_values }
}
