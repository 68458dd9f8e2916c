//! Bulk ingest: append a stream of Arrow batches to a table (Flight SQL's `DoPut` with
//! `CommandStatementIngest`, as ADBC's `adbc_ingest` sends it), with the same commit as INSERT.

use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{cast, col, lit};
use datafusion::physical_plan::streaming::PartitionStream;

use bowman_catalog::CatalogError;

use crate::error::{BowmanError, Result};
use crate::session::Session;
use crate::types::{table_fields, type_name};

/// The incoming batches as a one-partition stream DataFusion can scan once.
struct OneShot {
    schema: SchemaRef,
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl std::fmt::Debug for OneShot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OneShot")
    }
}

impl PartitionStream for OneShot {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        match self.stream.lock().expect("ingest stream").take() {
            Some(s) => s,
            None => {
                let schema = self.schema.clone();
                Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                    schema,
                    futures::stream::once(async {
                        Err(datafusion::error::DataFusionError::Execution("the ingested stream was already read".into()))
                    }),
                ))
            }
        }
    }
}

/// What ingest does when the table exists or not (ADBC's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestMode {
    /// Create the table; fail if it exists.
    Create,
    /// Append; fail if the table does not exist.
    Append,
    /// Create if missing, then append.
    CreateAppend,
    /// Drop and recreate, then append.
    Replace,
}

impl Session {
    /// Append `batches` to `database.table` (columns matched by name; missing ones NULL),
    /// creating the table first as `mode` says. Returns the rows written. (The statement's
    /// registry entry is [`Session::ingest`]'s.)
    pub(crate) async fn ingest_rows(
        &mut self,
        database: Option<&str>,
        table: &str,
        mode: IngestMode,
        batches: SendableRecordBatchStream,
    ) -> Result<usize> {
        let database = database.map(str::to_string).unwrap_or_else(|| self.current_database());
        let schema = batches.schema();
        self.engine.catalog.refresh().await?;
        let exists = self.engine.catalog.snapshot().table(&database, table).is_some();
        let quoted = format!("{}.{}", quote(&database), quote(table));
        match (mode, exists) {
            (IngestMode::Create, true) => return Err(CatalogError::TableExists(database, table.to_string()).into()),
            (IngestMode::Append, false) => return Err(CatalogError::TableNotFound(database, table.to_string()).into()),
            (IngestMode::Replace, true) => {
                self.execute_sql(&format!("DROP TABLE {quoted}")).await?;
            }
            _ => {}
        }
        if mode != IngestMode::Append && (!exists || mode == IngestMode::Replace) {
            let columns = schema
                .fields()
                .iter()
                .map(|f| Ok(format!("{} {}", quote(f.name()), type_name(f.data_type())?)))
                .collect::<Result<Vec<_>>>()?;
            self.execute_sql(&format!("CREATE TABLE {quoted} ({})", columns.join(", "))).await?;
        }

        let def = self
            .engine
            .catalog
            .snapshot()
            .table(&database, table)
            .cloned()
            .ok_or_else(|| CatalogError::TableNotFound(database.clone(), table.to_string()))?;
        let source = StreamingTable::try_new(schema.clone(), vec![Arc::new(OneShot { schema: schema.clone(), stream: Mutex::new(Some(batches)) })])?;
        let df = self.ctx.read_table(Arc::new(source))?;
        let mut exprs = Vec::with_capacity(def.columns.len());
        for target in table_fields(&def)? {
            let t = target.data_type().clone();
            let value = match schema.fields().iter().find(|f| f.name().eq_ignore_ascii_case(target.name())) {
                Some(f) => cast(col(Column::from_name(f.name())), t),
                None => cast(lit(ScalarValue::Null), t),
            };
            exprs.push(value.alias(target.name()));
        }
        if let Some(extra) = schema.fields().iter().find(|f| !def.columns.iter().any(|c| c.name.eq_ignore_ascii_case(f.name()))) {
            return Err(BowmanError::UndefinedColumn(format!("{} is not a column of {}", extra.name(), def.qualified_name())));
        }
        let df = df.select(exprs)?;
        let provider = self.engine.table_provider(&def).await?;
        let target = TableReference::partial(def.database.as_str(), def.name.as_str());
        let label = format!("INSERT INTO {target}");
        let plan = if crate::commit::tracked(&provider).is_some() {
            self.tracked_write_plan(&provider, crate::commit::WriteMode::Nothing, df.into_unoptimized_plan(), vec![], vec![])?
        } else {
            self.insert_plan(target, provider, df.into_unoptimized_plan())?
        };
        self.write_rows(plan, &label).await
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
