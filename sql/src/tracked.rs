//! Tracked tables: which files are live is decided by the catalog, not by a directory listing.
//!
//! A write to a tracked table puts its files in commit directories of their own,
//! `<location>/<partition>/_commit=<id>/` (one `_commit` value per write and partition), and
//! becomes visible when the catalog records those directories — one transaction that, for an
//! overwrite, also retires the directories being replaced. Nothing is ever renamed or copied.
//! Readers plan against one catalog snapshot, so they see a partition's old or new contents,
//! never a mix and never both; a write that dies before its commit leaves directories no
//! snapshot names (invisible; not yet deleted).
//!
//! Underneath, the connector's table simply has one more (hidden) partition column,
//! `_commit`; [`TrackedTable`] hides it and restricts every scan to the live values.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bowman_catalog::{LiveDir, TableDef};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::catalog::{Session as DfSession, TableProvider};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, cast, col, lit};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::projection::ProjectionExec;

/// The hidden partition column that names a write's commit directory.
pub const COMMIT_COLUMN: &str = "_commit";

pub(crate) struct TrackedTable {
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
    live: Vec<String>,
    pub(crate) def: TableDef,
    /// The commit id of the write this provider planned, if any.
    pending: Mutex<Option<String>>,
}

impl std::fmt::Debug for TrackedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackedTable").field("table", &self.def.qualified_name()).field("live", &self.live.len()).finish()
    }
}

/// A new commit id: milliseconds first, so ids sort by age.
pub(crate) fn new_commit_id() -> String {
    let millis = chrono::Utc::now().timestamp_millis();
    format!("{millis:013}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}


impl TrackedTable {
    pub(crate) fn new(inner: Arc<dyn TableProvider>, def: TableDef) -> Self {
        let full = inner.schema();
        let fields: Vec<_> = full.fields().iter().filter(|f| f.name() != COMMIT_COLUMN).cloned().collect();
        let live = def.live.iter().map(|l| l.dir.clone()).collect();
        TrackedTable { inner, schema: Arc::new(Schema::new(fields)), live, def, pending: Mutex::new(None) }
    }

    /// The commit id of the write planned through this provider.
    pub(crate) fn pending_commit(&self) -> Option<String> {
        self.pending.lock().expect("pending commit").clone()
    }

    /// The `_commit` value of each row: unique per write and partition, so an overwrite can
    /// retire one partition of an earlier write and keep the others.
    fn commit_value(&self, commit: &str) -> Expr {
        if self.def.partition_columns.is_empty() {
            return lit(commit.to_string());
        }
        use datafusion::functions::expr_fn::{concat, concat_ws, md5};
        let key: Vec<Expr> = self.def.partition_columns.iter().map(|p| cast(col(p.as_str()), DataType::Utf8)).collect();
        concat(vec![lit(format!("{commit}-")), cast(md5(concat_ws(lit("/"), key)), DataType::Utf8)])
    }
}

#[async_trait]
impl TableProvider for TrackedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // `_commit` is the inner table's last column, so visible indices are the same.
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        if self.live.is_empty() {
            let projected = Arc::new(self.schema.project(&projection)?);
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let mut filters = filters.to_vec();
        let live: Vec<Expr> = self.live.iter().map(|d| lit(ScalarValue::Utf8(Some(d.clone())))).collect();
        filters.push(col(COMMIT_COLUMN).in_list(live, false));
        self.inner.scan(state, Some(&projection), &filters, limit).await
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn insert_into(
        &self,
        state: &dyn DfSession,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let commit = new_commit_id();
        let input_schema = input.schema();
        let df_schema = DFSchema::try_from(input_schema.as_ref().clone())?;
        let mut exprs = Vec::with_capacity(input_schema.fields().len() + 1);
        for (i, f) in input_schema.fields().iter().enumerate() {
            let e: Arc<dyn datafusion::physical_plan::PhysicalExpr> =
                Arc::new(datafusion::physical_expr::expressions::Column::new(f.name(), i));
            exprs.push((e, f.name().clone()));
        }
        let value = state.create_physical_expr(self.commit_value(&commit), &df_schema)?;
        exprs.push((value, COMMIT_COLUMN.to_string()));
        let projected: Arc<dyn ExecutionPlan> = Arc::new(ProjectionExec::try_new(exprs, input)?);
        *self.pending.lock().expect("pending commit") = Some(commit);
        // The connector's sink only appends files; which ones become live is the commit's call.
        let _ = insert_op;
        self.inner.insert_into(state, projected, InsertOp::Append).await
    }
}

/// Commit directories of write `commit` under a table's files, from their paths
/// (`dt=2018-03-05/_commit=<commit>-<hash>/part.parquet`).
pub(crate) fn written_dirs<'a>(paths: impl Iterator<Item = &'a str>, commit: &str) -> Vec<LiveDir> {
    let mut out: Vec<LiveDir> = Vec::new();
    for path in paths {
        let segments: Vec<&str> = path.split('/').collect();
        let Some(pos) = segments.iter().position(|s| s.starts_with("_commit=")) else { continue };
        let dir = &segments[pos]["_commit=".len()..];
        if dir != commit && !dir.starts_with(&format!("{commit}-")) {
            continue;
        }
        let live = LiveDir { partition: segments[..pos].join("/"), dir: dir.to_string() };
        if !out.contains(&live) {
            out.push(live);
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_ids_sort_by_age() {
        let a = new_commit_id();
        assert_eq!(a.len(), 26);
        assert!(a[..13].parse::<i64>().unwrap() > 1_700_000_000_000);
    }

    #[test]
    fn finds_the_directories_of_one_write() {
        let paths = [
            "dt=2018-03-05/_commit=111-aa/p.parquet",
            "dt=2018-03-05/_commit=111-aa/q.parquet",
            "dt=2018-03-06/_commit=111-bb/p.parquet",
            "dt=2018-03-06/_commit=222-cc/p.parquet",
            "_commit=111/p.parquet",
        ];
        let dirs = written_dirs(paths.iter().copied(), "111");
        assert_eq!(
            dirs,
            vec![
                LiveDir { partition: "".into(), dir: "111".into() },
                LiveDir { partition: "dt=2018-03-05".into(), dir: "111-aa".into() },
                LiveDir { partition: "dt=2018-03-06".into(), dir: "111-bb".into() },
            ]
        );
    }
}
