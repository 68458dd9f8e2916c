//! A table in a remote SQL database, as DataFusion sees it.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bowman_connector::{ConnectorError, ErrorKind};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::TableReference;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::CreateExternalTable;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use datafusion::sql::unparser::Unparser;

use crate::exec::RemoteScanExec;
use crate::options::{PartitionSpec, RemoteOptions, RemoteSource};
use crate::pushdown::filter_pushdown;
use crate::RemoteDatabase;

/// A remote table (or query result) with the schema Bowman stored for it.
#[derive(Debug)]
pub struct RemoteTable {
    /// The Bowman name, for messages.
    name: String,
    db: Arc<dyn RemoteDatabase>,
    source: RemoteSource,
    schema: SchemaRef,
    partitioning: Option<PartitionSpec>,
}

impl RemoteTable {
    pub fn new(
        name: String,
        db: Arc<dyn RemoteDatabase>,
        source: RemoteSource,
        schema: SchemaRef,
        partitioning: Option<PartitionSpec>,
    ) -> Self {
        RemoteTable { name, db, source, schema, partitioning }
    }

    pub fn database(&self) -> &Arc<dyn RemoteDatabase> {
        &self.db
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The remote table a pushed-down join or aggregate can name, when this table is one (not a
    /// `query`) and reads are not split into partitions (a split read stays a parallel scan).
    pub fn joinable_reference(&self) -> Option<TableReference> {
        match (&self.source, &self.partitioning) {
            (RemoteSource::Table(t), None) => Some(self.db.table_reference(t)),
            _ => None,
        }
    }

    /// `FROM` text: the quoted remote table, or the user's query as a derived table.
    fn from_sql(&self) -> String {
        match &self.source {
            RemoteSource::Table(t) => quote_reference(self.db.as_ref(), &self.db.table_reference(t)),
            RemoteSource::Query(q) => format!("({q}) {}", quote_ident(self.db.as_ref(), "bowman_query")),
        }
    }

    /// The statements a scan sends: one per partition.
    pub fn scan_sql(&self, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> Result<Vec<String>> {
        let db = self.db.as_ref();
        let columns: Vec<String> = match projection {
            Some(p) if p.is_empty() => vec!["1".into()],
            Some(p) => p.iter().map(|i| quote_ident(db, self.schema.field(*i).name())).collect(),
            None => self.schema.fields().iter().map(|f| quote_ident(db, f.name())).collect(),
        };
        let dialect = db.dialect();
        let unparser = Unparser::new(dialect.as_ref()).with_pretty(true);
        let mut conditions = Vec::new();
        for f in filters {
            let unqualified = strip_qualifiers(f.clone());
            conditions.push(format!("({})", unparser.expr_to_sql(&unqualified)?));
        }
        let parts = match &self.partitioning {
            Some(spec) => spec.predicates(&quote_ident(db, &spec.column)),
            None => vec![None],
        };
        Ok(parts
            .into_iter()
            .map(|part| {
                let mut sql = format!("SELECT {} FROM {}", columns.join(", "), self.from_sql());
                let mut conds = conditions.clone();
                if let Some(p) = part {
                    conds.push(format!("({p})"));
                }
                if !conds.is_empty() {
                    sql.push_str(" WHERE ");
                    sql.push_str(&conds.join(" AND "));
                }
                if let Some(n) = limit {
                    sql.push_str(&format!(" LIMIT {n}"));
                }
                sql
            })
            .collect())
    }
}

fn strip_qualifiers(e: Expr) -> Expr {
    e.transform(|e| {
        Ok(match e {
            Expr::Column(c) if c.relation.is_some() => Transformed::yes(Expr::Column(datafusion::common::Column::new_unqualified(c.name))),
            e => Transformed::no(e),
        })
    })
    .map(|t| t.data)
    .expect("infallible")
}

/// Quote one identifier the way the remote's dialect does (doubling the quote character).
pub fn quote_ident(db: &dyn RemoteDatabase, name: &str) -> String {
    let q = db.dialect().identifier_quote_style(name).unwrap_or('"');
    let doubled: String = name.chars().flat_map(|c| if c == q { vec![c, c] } else { vec![c] }).collect();
    format!("{q}{doubled}{q}")
}

pub fn quote_reference(db: &dyn RemoteDatabase, r: &TableReference) -> String {
    match r {
        TableReference::Bare { table } => quote_ident(db, table),
        TableReference::Partial { schema, table } => format!("{}.{}", quote_ident(db, schema), quote_ident(db, table)),
        TableReference::Full { catalog, schema, table } => {
            format!("{}.{}.{}", quote_ident(db, catalog), quote_ident(db, schema), quote_ident(db, table))
        }
    }
}

#[async_trait]
impl TableProvider for RemoteTable {
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
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let sql = self.scan_sql(projection, filters, limit)?;
        Ok(Arc::new(RemoteScanExec::new(self.db.clone(), sql, schema, self.name.clone())))
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        let dialect = self.db.dialect();
        let unparser = Unparser::new(dialect.as_ref());
        let schema = datafusion::common::DFSchema::try_from(self.schema.as_ref().clone())?;
        Ok(filters
            .iter()
            .map(|f| {
                // Filters arrive qualified by the table's name; the schema here is unqualified.
                let f = strip_qualifiers((*f).clone());
                if unparser.expr_to_sql(&f).is_err() {
                    TableProviderFilterPushDown::Unsupported
                } else {
                    filter_pushdown(&f, &schema, self.db.as_ref())
                }
            })
            .collect())
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let RemoteSource::Table(t) = &self.source else {
            return Err(ConnectorError::new(
                ErrorKind::Unsupported,
                format!("{} reads a query; INSERT needs a table defined with dbtable", self.name),
            )
            .into());
        };
        if insert_op != InsertOp::Append {
            return Err(ConnectorError::new(
                ErrorKind::Unsupported,
                format!("INSERT OVERWRITE into the {} table {}; use INSERT INTO", self.db.kind(), self.name),
            )
            .into());
        }
        let sink = RemoteSink {
            name: self.name.clone(),
            db: self.db.clone(),
            target: self.db.table_reference(t),
            schema: self.schema.clone(),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// Writes an INSERT's rows into the remote table, in one remote transaction.
struct RemoteSink {
    name: String,
    db: Arc<dyn RemoteDatabase>,
    target: TableReference,
    schema: SchemaRef,
}

impl fmt::Debug for RemoteSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteSink({})", self.name)
    }
}

impl DisplayAs for RemoteSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "RemoteSink: {} {} table={}", self.db.kind(), self.db.describe(), quote_reference(self.db.as_ref(), &self.target))
    }
}

#[async_trait]
impl DataSink for RemoteSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(&self, data: SendableRecordBatchStream, _context: &Arc<TaskContext>) -> Result<u64> {
        self.db.insert(&self.target, data, &self.name).await
    }
}

/// The schema of a remote table must be usable by Bowman: every column named.
pub fn check_schema(schema: &Schema, table: &str) -> Result<()> {
    if let Some(f) = schema.fields().iter().find(|f| f.name().is_empty()) {
        return Err(DataFusionError::Plan(format!("{table}: a remote column has no name ({})", f.data_type())));
    }
    Ok(())
}

/// Split `schema.table` (parts optionally double-quoted or back-quoted) into a reference;
/// unquoted parts fold to lower case when `fold` (PostgreSQL's rule).
pub fn parse_reference(dbtable: &str, fold: bool) -> TableReference {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut quoted_part = false;
    let mut chars = dbtable.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => {
                if chars.peek() == Some(&q) {
                    cur.push(q);
                    chars.next();
                } else {
                    quote = None;
                }
            }
            Some(_) => cur.push(c),
            None if c == '"' || c == '`' => {
                quote = Some(c);
                quoted_part = true;
            }
            None if c == '.' => {
                parts.push(std::mem::take(&mut cur));
                quoted_part = false;
            }
            None => cur.push(if fold && !quoted_part { c.to_ascii_lowercase() } else { c }),
        }
    }
    parts.push(cur);
    match parts.len() {
        1 => TableReference::bare(parts.remove(0)),
        2 => TableReference::partial(parts.remove(0), parts.remove(0)),
        _ => {
            let table = parts.pop().unwrap_or_default();
            let schema = parts.pop().unwrap_or_default();
            TableReference::full(parts.join("."), schema, table)
        }
    }
}


/// Open a table over a database, with the stored schema or (at CREATE TABLE) the remote one.
pub async fn open_table(
    cmd: &CreateExternalTable,
    db: Arc<dyn RemoteDatabase>,
    o: RemoteOptions,
    discover: impl std::future::Future<Output = Result<Schema>>,
) -> Result<Arc<dyn TableProvider>> {
    let name = cmd.name.to_string();
    let schema: SchemaRef = if cmd.schema.fields().is_empty() {
        Arc::new(discover.await?)
    } else {
        Arc::new(cmd.schema.as_arrow().clone())
    };
    check_schema(&schema, &name)?;
    Ok(Arc::new(RemoteTable::new(name, db, o.source, schema, o.partitioning)))
}


#[cfg(test)]
mod tests {
    use super::*;


    #[test]
    fn references_follow_postgres_case_rules() {
        assert_eq!(parse_reference("Public.Users", true), TableReference::partial("public", "users"));
        assert_eq!(parse_reference("\"Odd.Schema\".\"T\"\"x\"", true), TableReference::partial("Odd.Schema", "T\"x"));
        assert_eq!(parse_reference("events", true), TableReference::bare("events"));
        assert_eq!(parse_reference("Db.T", false), TableReference::partial("Db", "T"));
    }
}
