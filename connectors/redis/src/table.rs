//! A Redis key space as a DataFusion table: which column is what, and which filters become
//! direct reads instead of a SCAN.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use bowman_connector::{ConnectorError, ErrorKind};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::error::Result;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

use crate::options::{Format, RedisOptions, invalid};
use crate::scan::RedisScanExec;
use crate::sink::RedisSink;

/// What one column of the table holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The whole key.
    Key,
    /// The n-th placeholder of `key_parts`.
    Part(usize),
    /// Why the row's values did not decode; NULL when they did.
    Error,
    /// A hash field, JSON member or stream entry field of this name.
    Field(String),
    /// The value of a `string` key.
    Value,
    /// A sorted-set member and its score.
    Member,
    Score,
    /// A stream entry's id, and its two halves.
    Id,
    Ms,
    Seq,
}

pub const ERROR_COLUMN: &str = "_error";

/// The columns of a table without declared ones: the key column, the key_parts columns
/// (STRING), what the format fixes (string: `value`; zset: `member`, `score`; stream: `_id`)
/// and, for hash, json and stream tables, the `sampled` field names with their types and `_error`.
pub fn default_schema(o: &RedisOptions, sampled: &[(String, DataType)]) -> Schema {
    let mut fields = vec![Field::new(&o.key_column, DataType::Utf8, true)];
    let parts: Vec<String> = o.key_parts.as_ref().map(|t| t.columns().iter().map(|c| c.to_string()).collect()).unwrap_or_default();
    for p in &parts {
        if !p.eq_ignore_ascii_case(&o.key_column) {
            fields.push(Field::new(p, DataType::Utf8, true));
        }
    }
    match o.format {
        Format::String => fields.push(Field::new(o.value_column.as_deref().unwrap_or("value"), DataType::Utf8, true)),
        Format::Zset => {
            fields.push(Field::new("member", DataType::Utf8, true));
            fields.push(Field::new("score", DataType::Float64, true));
        }
        Format::Stream => fields.push(Field::new("_id", DataType::Utf8, true)),
        Format::Hash | Format::Json => {}
    }
    if matches!(o.format, Format::Hash | Format::Json | Format::Stream) {
        for (name, ty) in sampled {
            let taken = fields.iter().any(|f| f.name().eq_ignore_ascii_case(name)) || name.eq_ignore_ascii_case(ERROR_COLUMN);
            if !taken && !name.is_empty() {
                fields.push(Field::new(name, ty.clone(), true));
            }
        }
    }
    // Sampled columns are a guess about keys not seen: such tables read what does not fit as
    // NULLs with the reason in `_error`. string and zset tables have fixed columns (and take
    // INSERT ... VALUES of exactly those).
    if matches!(o.format, Format::Hash | Format::Json | Format::Stream) {
        fields.push(Field::new(ERROR_COLUMN, DataType::Utf8, true));
    }
    Schema::new(fields)
}

/// Assign every column its role, refusing layouts that cannot be read.
pub fn roles(schema: &Schema, o: &RedisOptions, table: &str) -> Result<Vec<Role>, ConnectorError> {
    let parts: Vec<String> = o.key_parts.as_ref().map(|t| t.columns().iter().map(|c| c.to_string()).collect()).unwrap_or_default();
    for p in &parts {
        if !schema.fields().iter().any(|f| f.name().eq_ignore_ascii_case(p)) {
            return Err(invalid(format!("table {table}: key_parts names {{{p}}}, which is not a column of the table")));
        }
    }
    let mut roles = Vec::new();
    let mut values = Vec::new();
    for (i, f) in schema.fields().iter().enumerate() {
        let name = f.name();
        let role = if let Some(p) = parts.iter().position(|p| p.eq_ignore_ascii_case(name)) {
            Role::Part(p)
        } else if name.eq_ignore_ascii_case(&o.key_column) {
            Role::Key
        } else if name.eq_ignore_ascii_case(ERROR_COLUMN) {
            if !matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
                return Err(invalid(format!("table {table}: the {ERROR_COLUMN} column must be STRING")));
            }
            Role::Error
        } else {
            match o.format {
                Format::Hash | Format::Json => Role::Field(name.clone()),
                Format::String => {
                    values.push(i);
                    Role::Value
                }
                Format::Zset => match name.to_ascii_lowercase().as_str() {
                    "member" => Role::Member,
                    "score" => Role::Score,
                    _ => {
                        return Err(invalid(format!(
                            "table {table}: a zset table has the key column ({}), key_parts columns, member, score and {ERROR_COLUMN}; {name} is none of them",
                            o.key_column
                        )));
                    }
                },
                Format::Stream => match name.to_ascii_lowercase().as_str() {
                    "_id" => Role::Id,
                    "_ms" => Role::Ms,
                    "_seq" => Role::Seq,
                    _ => Role::Field(name.clone()),
                },
            }
        };
        roles.push(role);
    }
    if o.format == Format::String {
        let chosen = match &o.value_column {
            Some(v) => Some(
                values
                    .iter()
                    .copied()
                    .find(|&i| schema.field(i).name().eq_ignore_ascii_case(v))
                    .ok_or_else(|| invalid(format!("table {table}: value_column {v} is not a column of the table")))?,
            ),
            None if values.len() <= 1 => values.first().copied(),
            None => {
                return Err(invalid(format!(
                    "table {table}: a string table has one value column besides the key columns; name it with value_column"
                )));
            }
        };
        for &i in &values {
            if Some(i) != chosen {
                return Err(invalid(format!(
                    "table {table}: a string table has one value column; {} is not the key, a key part, {ERROR_COLUMN} or the value column",
                    schema.field(i).name()
                )));
            }
        }
    }
    Ok(roles)
}

/// Where a scan's keys come from.
#[derive(Debug, Clone, PartialEq)]
pub enum KeySource {
    /// `SCAN cursor MATCH pattern COUNT n`.
    Scan(String),
    /// Keys named by the query's filters: read directly, no SCAN.
    Keys(Vec<String>),
}

/// The most keys a filter may name before Bowman scans instead.
pub const MAX_DIRECT_KEYS: usize = 100_000;

#[derive(Debug)]
pub struct RedisTable {
    pub name: String,
    pub options: RedisOptions,
    pub schema: SchemaRef,
    pub roles: Vec<Role>,
}

impl RedisTable {
    pub fn new(name: String, options: RedisOptions, schema: SchemaRef) -> Result<Self, ConnectorError> {
        let roles = roles(&schema, &options, &name)?;
        Ok(RedisTable { name, options, schema, roles })
    }

    fn role_of(&self, column: &str) -> Option<&Role> {
        self.schema.fields().iter().position(|f| f.name() == column).map(|i| &self.roles[i])
    }

    /// The keys `filters` pin the table to, if they do: equality or IN on the key column, or on
    /// every key_parts column.
    pub fn direct_keys(&self, filters: &[Expr]) -> Option<Vec<String>> {
        let mut key_sets: Vec<BTreeSet<String>> = Vec::new();
        let nparts = self.options.key_parts.as_ref().map(|t| t.columns().len()).unwrap_or(0);
        let mut part_sets: Vec<Option<BTreeSet<String>>> = vec![None; nparts];
        for f in filters {
            let Some((col, values)) = equality_set(f) else { continue };
            match self.role_of(&col) {
                Some(Role::Key) => key_sets.push(values),
                Some(Role::Part(p)) => {
                    let slot = &mut part_sets[*p];
                    *slot = Some(match slot.take() {
                        Some(s) => s.intersection(&values).cloned().collect(),
                        None => values,
                    });
                }
                _ => {}
            }
        }
        let mut keys: Option<BTreeSet<String>> = None;
        for s in key_sets {
            keys = Some(match keys {
                Some(k) => k.intersection(&s).cloned().collect(),
                None => s,
            });
        }
        if keys.is_none() && nparts > 0 && part_sets.iter().all(|s| s.is_some()) {
            let sets: Vec<Vec<String>> = part_sets.into_iter().map(|s| s.unwrap_or_default().into_iter().collect()).collect();
            let total = sets.iter().try_fold(1usize, |acc, s| acc.checked_mul(s.len()))?;
            if total > MAX_DIRECT_KEYS {
                return None;
            }
            let template = self.options.key_parts.as_ref()?;
            let mut combos: Vec<Vec<&str>> = vec![vec![]];
            for s in &sets {
                combos = combos.iter().flat_map(|c| s.iter().map(move |v| [c.clone(), vec![v.as_str()]].concat())).collect();
            }
            keys = Some(combos.iter().map(|c| template.format(c)).collect());
        }
        let keys = keys?;
        (keys.len() <= MAX_DIRECT_KEYS).then(|| keys.into_iter().collect())
    }

    /// Stream entry-id ranges (XRANGE start, end) the filters allow: `_id = / IN` give exact
    /// ids, comparisons on `_ms` a range of milliseconds. `None`: an empty range.
    pub fn id_ranges(&self, filters: &[Expr]) -> Option<Vec<(String, String)>> {
        let mut ids: Option<BTreeSet<String>> = None;
        let (mut lo, mut hi): (u64, u64) = (0, u64::MAX);
        for f in filters {
            if let Some((col, values)) = equality_set(f)
                && self.role_of(&col) == Some(&Role::Id) {
                    let values: BTreeSet<String> = values.into_iter().filter(|v| valid_entry_id(v)).collect();
                    ids = Some(match ids {
                        Some(s) => s.intersection(&values).cloned().collect(),
                        None => values,
                    });
                    continue;
                }
            if let Some((col, op, v)) = comparison(f)
                && self.role_of(&col) == Some(&Role::Ms) {
                    match op {
                        Operator::Eq => {
                            if v < 0 {
                                return None;
                            }
                            lo = lo.max(v as u64);
                            hi = hi.min(v as u64);
                        }
                        Operator::Gt => lo = lo.max(if v < 0 { 0 } else { (v as u64).saturating_add(1) }),
                        Operator::GtEq => lo = lo.max(v.max(0) as u64),
                        Operator::Lt => {
                            if v <= 0 {
                                return None;
                            }
                            hi = hi.min(v as u64 - 1)
                        }
                        Operator::LtEq => {
                            if v < 0 {
                                return None;
                            }
                            hi = hi.min(v as u64)
                        }
                        _ => {}
                    }
                }
        }
        if lo > hi {
            return None;
        }
        match ids {
            Some(ids) => Some(ids.into_iter().map(|id| (id.clone(), id)).collect()),
            None => {
                let start = if lo == 0 { "-".to_string() } else { format!("{lo}-0") };
                let end = if hi == u64::MAX { "+".to_string() } else { hi.to_string() };
                Some(vec![(start, end)])
            }
        }
    }

    fn pushable(&self, f: &Expr) -> bool {
        if let Some((col, _)) = equality_set(f)
            && matches!(self.role_of(&col), Some(Role::Key | Role::Part(_) | Role::Id)) {
                return true;
            }
        if let Some((col, op, _)) = comparison(f) {
            return self.role_of(&col) == Some(&Role::Ms)
                && matches!(op, Operator::Eq | Operator::Gt | Operator::GtEq | Operator::Lt | Operator::LtEq);
        }
        false
    }
}

/// A stream entry id as XRANGE takes it: `ms-seq` or `ms`.
fn valid_entry_id(s: &str) -> bool {
    let mut it = s.splitn(2, '-');
    let ms = it.next().unwrap_or("");
    let ok = |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u64>().is_ok();
    ok(ms) && it.next().is_none_or(ok)
}

fn column_name(e: &Expr) -> Option<String> {
    match e {
        // Not through a CAST: `CAST(id AS STRING) = '03'` does not name the key user:03.
        Expr::Column(c) => Some(c.name.clone()),
        _ => None,
    }
}

/// A literal as the text it has inside a key.
fn literal_text(e: &Expr) -> Option<String> {
    let Expr::Literal(v, _) = e else { return None };
    match v {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
        ScalarValue::Int8(Some(n)) => Some(n.to_string()),
        ScalarValue::Int16(Some(n)) => Some(n.to_string()),
        ScalarValue::Int32(Some(n)) => Some(n.to_string()),
        ScalarValue::Int64(Some(n)) => Some(n.to_string()),
        ScalarValue::UInt8(Some(n)) => Some(n.to_string()),
        ScalarValue::UInt16(Some(n)) => Some(n.to_string()),
        ScalarValue::UInt32(Some(n)) => Some(n.to_string()),
        ScalarValue::UInt64(Some(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// `col = lit`, `lit = col`, `col IN (lits)` and ORs of those on one column: the column and
/// the values it may take.
fn equality_set(e: &Expr) -> Option<(String, BTreeSet<String>)> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => {
            let (c, v) = match (column_name(left), literal_text(right)) {
                (Some(c), Some(v)) => (c, v),
                _ => (column_name(right)?, literal_text(left)?),
            };
            Some((c, BTreeSet::from([v])))
        }
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => {
            let (a, mut va) = equality_set(left)?;
            let (b, vb) = equality_set(right)?;
            if a != b {
                return None;
            }
            va.extend(vb);
            Some((a, va))
        }
        Expr::InList(l) if !l.negated => {
            let c = column_name(&l.expr)?;
            let mut values = BTreeSet::new();
            for item in &l.list {
                match item {
                    Expr::Literal(v, _) if v.is_null() => {}
                    item => {
                        values.insert(literal_text(item)?);
                    }
                }
            }
            Some((c, values))
        }
        _ => None,
    }
}

/// `col <op> integer` (or the mirror image), op normalised to the column's side.
fn comparison(e: &Expr) -> Option<(String, Operator, i64)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else { return None };
    let int = |e: &Expr| match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::Int8(Some(n)) => Some(*n as i64),
            ScalarValue::Int16(Some(n)) => Some(*n as i64),
            ScalarValue::Int32(Some(n)) => Some(*n as i64),
            ScalarValue::Int64(Some(n)) => Some(*n),
            ScalarValue::UInt8(Some(n)) => Some(*n as i64),
            ScalarValue::UInt16(Some(n)) => Some(*n as i64),
            ScalarValue::UInt32(Some(n)) => Some(*n as i64),
            ScalarValue::UInt64(Some(n)) => i64::try_from(*n).ok(),
            _ => None,
        },
        _ => None,
    };
    if let (Some(c), Some(v)) = (column_name(left), int(right)) {
        return Some((c, *op, v));
    }
    let (c, v) = (column_name(right)?, int(left)?);
    let op = match op {
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        o => *o,
    };
    Some((c, op, v))
}

#[async_trait]
impl TableProvider for RedisTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let source = match self.direct_keys(filters) {
            Some(keys) => KeySource::Keys(keys),
            None => match &self.options.key_pattern {
                Some(p) => KeySource::Scan(p.clone()),
                None => {
                    return Err(invalid(format!(
                        "table {}: without key_pattern or key_parts Bowman cannot scan it; filter on its key column ({} = ... or IN (...)) or give OPTIONS (key_pattern '...')",
                        self.name, self.options.key_column
                    ))
                    .into());
                }
            },
        };
        let id_ranges = if self.options.format == Format::Stream { self.id_ranges(filters) } else { Some(vec![]) };
        Ok(Arc::new(RedisScanExec::new(
            self.name.clone(),
            self.options.clone(),
            self.schema.clone(),
            self.roles.clone(),
            projection,
            source,
            id_ranges.clone().unwrap_or_default(),
            id_ranges.is_none(),
            limit,
        )?))
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        // Inexact: the filters choose which keys and entries are read; Bowman still checks
        // every row against them.
        Ok(filters
            .iter()
            .map(|f| if self.pushable(f) { TableProviderFilterPushDown::Inexact } else { TableProviderFilterPushDown::Unsupported })
            .collect())
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(ConnectorError::new(
                ErrorKind::Unsupported,
                format!("INSERT OVERWRITE into the redis table {}; use INSERT INTO (existing keys are replaced)", self.name),
            )
            .into());
        }
        let has_key = self.roles.contains(&Role::Key);
        if !has_key && self.options.key_parts.is_none() {
            return Err(ConnectorError::new(
                ErrorKind::Unsupported,
                format!(
                    "INSERT into the redis table {}: it has neither a {} column nor key_parts, so rows have no key",
                    self.name, self.options.key_column
                ),
            )
            .into());
        }
        let sink = RedisSink::new(self.name.clone(), self.options.clone(), self.schema.clone(), self.roles.clone());
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}
