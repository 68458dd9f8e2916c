//! Which WHERE conditions a Kafka scan answers itself: `_partition` (=, IN, ranges) and
//! `_offset` ranges exactly (the scan reads only those offsets), `_timestamp` ranges inexactly
//! (through offsets-for-times; DataFusion filters the rows again).

use std::collections::BTreeSet;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};

use crate::decode::{Layout, Meta};

/// The offsets, partitions and times a scan's conditions allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    pub partitions: Option<BTreeSet<i32>>,
    /// Inclusive partition bounds from `<`, `>`, ... on `_partition`.
    pub partition_lo: i64,
    pub partition_hi: i64,
    /// `[offset_lo, offset_hi)`
    pub offset_lo: i64,
    pub offset_hi: i64,
    /// Milliseconds since the epoch, inclusive.
    pub ts_lo: Option<i64>,
    pub ts_hi: Option<i64>,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds { partitions: None, partition_lo: 0, partition_hi: i32::MAX as i64, offset_lo: 0, offset_hi: i64::MAX, ts_lo: None, ts_hi: None }
    }
}

impl Bounds {
    pub fn allows_partition(&self, p: i32) -> bool {
        let p64 = p as i64;
        p64 >= self.partition_lo && p64 <= self.partition_hi && self.partitions.as_ref().is_none_or(|s| s.contains(&p))
    }
}

/// What a column reference in a condition is.
fn meta_of(e: &Expr, layout: &Layout) -> Option<Meta> {
    let e = match e {
        // widening casts of the column keep its order (`CAST(_partition AS BIGINT) = 1`)
        Expr::Cast(c) if c.field.data_type().is_integer() || matches!(c.field.data_type(), datafusion::arrow::datatypes::DataType::Timestamp(_, _)) => c.expr.as_ref(),
        e => e,
    };
    let Expr::Column(c) = e else { return None };
    let idx = layout.schema.index_of(&c.name).ok()?;
    layout.meta[idx]
}

fn int_of(v: &ScalarValue) -> Option<i64> {
    Some(match v {
        ScalarValue::Int8(Some(x)) => *x as i64,
        ScalarValue::Int16(Some(x)) => *x as i64,
        ScalarValue::Int32(Some(x)) => *x as i64,
        ScalarValue::Int64(Some(x)) => *x,
        ScalarValue::UInt8(Some(x)) => *x as i64,
        ScalarValue::UInt16(Some(x)) => *x as i64,
        ScalarValue::UInt32(Some(x)) => *x as i64,
        ScalarValue::UInt64(Some(x)) => i64::try_from(*x).ok()?,
        _ => return None,
    })
}

/// A timestamp literal in milliseconds: (floor, ceil).
fn ms_of(v: &ScalarValue) -> Option<(i64, i64)> {
    let (v, per_ms): (i64, i64) = match v {
        ScalarValue::TimestampSecond(Some(x), _) => return Some((x.saturating_mul(1000), x.saturating_mul(1000))),
        ScalarValue::TimestampMillisecond(Some(x), _) => return Some((*x, *x)),
        ScalarValue::TimestampMicrosecond(Some(x), _) => (*x, 1000),
        ScalarValue::TimestampNanosecond(Some(x), _) => (*x, 1_000_000),
        _ => return None,
    };
    Some((v.div_euclid(per_ms), v.div_euclid(per_ms) + if v.rem_euclid(per_ms) == 0 { 0 } else { 1 }))
}

fn lit_of(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v),
        _ => None,
    }
}

fn flip(op: Operator) -> Option<Operator> {
    Some(match op {
        Operator::Eq => Operator::Eq,
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        _ => return None,
    })
}

/// Apply one condition to `b`; `None` when the scan cannot answer it, else whether it answers
/// it exactly.
fn apply(e: &Expr, layout: &Layout, b: &mut Bounds) -> Option<bool> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => {
            let l = apply(left, layout, b)?;
            let r = apply(right, layout, b)?;
            Some(l && r)
        }
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => {
            // `_partition = 0 OR _partition = 2` (how small IN lists arrive): the union
            let side = |e: &Expr| -> Option<BTreeSet<i32>> {
                let mut t = Bounds::default();
                let exact = apply(e, layout, &mut t)?;
                let only_partitions = Bounds { partitions: t.partitions.clone(), ..Bounds::default() } == t;
                (exact && only_partitions).then_some(t.partitions).flatten()
            };
            let (l, r) = (side(left)?, side(right)?);
            restrict(b, l.union(&r).copied().collect());
            Some(true)
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (m, op, v) = match (meta_of(left, layout), meta_of(right, layout)) {
                (Some(m), None) => (m, *op, lit_of(right)?),
                (None, Some(m)) => (m, flip(*op)?, lit_of(left)?),
                _ => return None,
            };
            compare(m, op, v, b)
        }
        Expr::Between(Between { expr, negated: false, low, high }) => {
            let m = meta_of(expr, layout)?;
            let (lo, hi) = (lit_of(low)?, lit_of(high)?);
            let mut t = b.clone();
            let x = compare(m, Operator::GtEq, lo, &mut t)?;
            let y = compare(m, Operator::LtEq, hi, &mut t)?;
            *b = t;
            Some(x && y)
        }
        Expr::InList(l) if !l.negated && meta_of(&l.expr, layout) == Some(Meta::Partition) => {
            let mut set = BTreeSet::new();
            for v in &l.list {
                let n = int_of(lit_of(v)?)?;
                if let Ok(p) = i32::try_from(n) {
                    set.insert(p);
                }
            }
            restrict(b, set);
            Some(true)
        }
        _ => None,
    }
}

fn restrict(b: &mut Bounds, set: BTreeSet<i32>) {
    b.partitions = Some(match b.partitions.take() {
        Some(old) => old.intersection(&set).copied().collect(),
        None => set,
    });
}

fn compare(m: Meta, op: Operator, v: &ScalarValue, b: &mut Bounds) -> Option<bool> {
    match m {
        Meta::Partition => {
            let n = int_of(v)?;
            // partitions are 0..i32::MAX; clamp the bounds to that
            let (lo, hi): (i64, i64) = match op {
                Operator::Eq => (n, n),
                Operator::Gt => (n.saturating_add(1), i32::MAX as i64),
                Operator::GtEq => (n, i32::MAX as i64),
                Operator::Lt => (0, n.saturating_sub(1)),
                Operator::LtEq => (0, n),
                _ => return None,
            };
            let (lo, hi) = (lo.max(0), hi.min(i32::MAX as i64));
            match op {
                Operator::Eq => restrict(b, if (0..=i32::MAX as i64).contains(&n) { [n as i32].into() } else { BTreeSet::new() }),
                _ => {
                    b.partition_lo = b.partition_lo.max(lo);
                    b.partition_hi = b.partition_hi.min(hi);
                }
            }
            Some(true)
        }
        Meta::Offset => {
            let n = int_of(v)?;
            match op {
                Operator::Eq => {
                    b.offset_lo = b.offset_lo.max(n);
                    b.offset_hi = b.offset_hi.min(n.saturating_add(1));
                }
                Operator::Gt => b.offset_lo = b.offset_lo.max(n.saturating_add(1)),
                Operator::GtEq => b.offset_lo = b.offset_lo.max(n),
                Operator::Lt => b.offset_hi = b.offset_hi.min(n),
                Operator::LtEq => b.offset_hi = b.offset_hi.min(n.saturating_add(1)),
                _ => return None,
            }
            Some(true)
        }
        Meta::Timestamp => {
            let (floor, ceil) = ms_of(v)?;
            match op {
                Operator::Eq => {
                    b.ts_lo = Some(b.ts_lo.map_or(floor, |x| x.max(floor)));
                    b.ts_hi = Some(b.ts_hi.map_or(ceil, |x| x.min(ceil)));
                }
                Operator::Gt | Operator::GtEq => b.ts_lo = Some(b.ts_lo.map_or(floor, |x| x.max(floor))),
                Operator::Lt | Operator::LtEq => b.ts_hi = Some(b.ts_hi.map_or(ceil, |x| x.min(ceil))),
                _ => return None,
            }
            Some(false)
        }
        _ => None,
    }
}

/// How the scan answers one condition.
pub fn classify(e: &Expr, layout: &Layout) -> TableProviderFilterPushDown {
    let mut b = Bounds::default();
    match apply(e, layout, &mut b) {
        Some(true) => TableProviderFilterPushDown::Exact,
        Some(false) => TableProviderFilterPushDown::Inexact,
        None => TableProviderFilterPushDown::Unsupported,
    }
}

/// The bounds of all the conditions the scan answers.
pub fn bounds(filters: &[Expr], layout: &Layout) -> Bounds {
    let mut b = Bounds::default();
    for f in filters {
        let mut t = b.clone();
        if apply(f, layout, &mut t).is_some() {
            b = t;
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{KeyFormat, ValueFormat};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::{col, lit};

    fn layout() -> Layout {
        Layout::new(&Schema::new(vec![Field::new("v", DataType::Utf8, true)]), ValueFormat::Json, KeyFormat::String, "t").unwrap()
    }

    #[test]
    fn partition_and_offsets() {
        let l = layout();
        let f = col("_partition").eq(lit(1i32)).and(col("_offset").gt_eq(lit(1000i64)));
        assert_eq!(classify(&f, &l), TableProviderFilterPushDown::Exact);
        let b = bounds(&[f], &l);
        assert_eq!(b.partitions, Some([1].into()));
        assert_eq!((b.offset_lo, b.offset_hi), (1000, i64::MAX));
        let b = bounds(&[lit(20i64).gt(col("_offset")), col("_offset").between(lit(5i64), lit(30i64))], &l);
        assert_eq!((b.offset_lo, b.offset_hi), (5, 20));
        assert_eq!(classify(&col("v").eq(lit("x")), &l), TableProviderFilterPushDown::Unsupported);
        assert_eq!(classify(&col("_offset").eq(lit(1i64)).or(col("_offset").eq(lit(5i64))), &l), TableProviderFilterPushDown::Unsupported);
        let or = col("_partition").eq(lit(0i32)).or(col("_partition").eq(lit(2i32)));
        assert_eq!(classify(&or, &l), TableProviderFilterPushDown::Exact);
        assert_eq!(bounds(&[or], &l).partitions, Some([0, 2].into()));
        let b = bounds(&[col("_partition").in_list(vec![lit(0i32), lit(2i32)], false), col("_partition").lt(lit(2i32))], &l);
        assert_eq!((b.partitions.clone(), b.partition_lo, b.partition_hi), (Some([0, 2].into()), 0, 1));
        assert!(b.allows_partition(0) && !b.allows_partition(2));
        let ts = col("_timestamp").gt_eq(lit(ScalarValue::TimestampMicrosecond(Some(1_500_123), Some("UTC".into()))));
        assert_eq!(classify(&ts, &l), TableProviderFilterPushDown::Inexact);
        assert_eq!(bounds(&[ts], &l).ts_lo, Some(1500));
    }
}
