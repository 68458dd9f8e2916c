use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bowman_catalog::TableDef;
use bowman_catalog::provider::TableResolver;
use bowman_connector::{AsOf, ConnectorRegistry};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::common::{DFSchema, TableReference};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::CreateExternalTable;


/// Opens catalog tables through the connector registered for their format.
#[derive(Debug)]
pub(crate) struct ConnectorResolver {
    pub connectors: ConnectorRegistry,
    /// Tables over the same LOCATION see each other's files.
    pub catalog: Arc<bowman_catalog::Catalog>,
    /// A session sharing the engine's runtime (object stores, memory pool), handed to connectors.
    pub state: SessionState,
    /// Every catalog table opened, so privilege checks know which table a scan reads.
    pub opened: Arc<crate::privileges::Opened>,
}

/// The DataFusion command that describes a stored table to its connector.
///
/// For tables Bowman tracks ([`crate::tracked::TrackedTable`]) partition columns are strings
/// here, as their directory names hold them; the tracked table types them.
pub(crate) fn external_table_command(def: &TableDef, tracked: bool) -> Result<CreateExternalTable> {
    let mut fields = crate::types::table_fields(def).map_err(|e| DataFusionError::Plan(e.message()))?;
    if tracked {
        for f in fields.iter_mut() {
            if def.partition_columns.contains(f.name()) {
                *f = Field::new(f.name(), datafusion::arrow::datatypes::DataType::Utf8, true);
            }
        }
    }
    let mut partition_cols = def.partition_columns.clone();
    if def.tracked {
        // The commit directory is one more Hive partition level, hidden by TrackedTable.
        fields.push(Field::new(crate::tracked::COMMIT_COLUMN, datafusion::arrow::datatypes::DataType::Utf8, false));
        partition_cols.push(crate::tracked::COMMIT_COLUMN.to_string());
    }
    let schema = DFSchema::try_from(Schema::new(fields))?;
    let options: HashMap<String, String> = def.all_options().into_iter().collect();
    Ok(CreateExternalTable::builder(
        TableReference::partial(def.database.as_str(), def.name.as_str()),
        def.location.clone().unwrap_or_default(),
        def.format.clone(),
        Arc::new(schema),
    )
    .with_partition_cols(partition_cols)
    .with_options(options)
    .build())
}

impl ConnectorResolver {
    fn connector(&self, table: &TableDef) -> Result<Arc<dyn bowman_connector::Connector>> {
        self.connectors.get(&table.format).ok_or_else(|| {
            DataFusionError::Plan(format!(
                "table {} uses format '{}', which this Bowman build does not have",
                table.qualified_name(),
                table.format
            ))
        })
    }
}

#[async_trait]
impl TableResolver for ConnectorResolver {
    async fn resolve(&self, table: &TableDef) -> Result<Arc<dyn TableProvider>> {
        let provider = self.open(table).await?;
        self.opened.record(&provider, &table.database, &table.name);
        Ok(provider)
    }

    async fn resolve_view(&self, view: &bowman_catalog::ViewDef) -> Result<Arc<dyn TableProvider>> {
        let provider = crate::views::ViewProvider::new(view.clone(), false).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let provider: Arc<dyn TableProvider> = Arc::new(provider);
        self.opened.record(&provider, &view.database, &view.name);
        Ok(provider)
    }

    async fn resolve_as_of(&self, table: &TableDef, as_of: &str) -> Result<Arc<dyn TableProvider>> {
        let provider = self.open_as_of(table, as_of).await?;
        self.opened.record(&provider, &table.database, &table.name);
        Ok(provider)
    }
}

impl ConnectorResolver {
    async fn open(&self, table: &TableDef) -> Result<Arc<dyn TableProvider>> {
        let connector = self.connector(table)?;
        let layout = layout(connector.as_ref(), table);
        let cmd = external_table_command(table, layout.is_some())?;
        let provider = connector.create(&self.state, &cmd).await?;
        match layout {
            Some(layout) => {
                let siblings = siblings(&self.catalog.snapshot(), table);
                Ok(Arc::new(crate::tracked::TrackedTable::new(provider, table.clone(), layout, &siblings)?))
            }
            None => Ok(provider),
        }
    }

    async fn open_as_of(&self, table: &TableDef, as_of: &str) -> Result<Arc<dyn TableProvider>> {
        let connector = self.connector(table)?;
        let (_, as_of) = AsOf::split_name(&format!("{}@{as_of}", table.name))
            .ok_or_else(|| DataFusionError::Plan(format!("'{as_of}' is not a version or timestamp of {}", table.qualified_name())))?;
        let cmd = external_table_command(table, false)?;
        connector.create_as_of(&self.state, &cmd, &as_of).await
    }
}

/// How Bowman commits writes to a table: managed file tables in commit directories, external
/// file tables (a directory LOCATION) as listed files; `None` for tables that keep their own
/// log (Delta), remote tables, and a LOCATION that names one file.
pub(crate) fn layout(connector: &dyn bowman_connector::Connector, table: &TableDef) -> Option<crate::tracked::Layout> {
    if table.tracked {
        return Some(crate::tracked::Layout::CommitDirs);
    }
    let files = connector.stores_files() && !connector.keeps_own_log();
    let directory = table.location.as_deref().is_some_and(|l| !bowman_connector_files::is_single_file(l));
    (files && table.kind == bowman_catalog::TableKind::External && directory).then_some(crate::tracked::Layout::Listed)
}

/// The other external tables over the same LOCATION as `table` (several tables may describe
/// one directory: a writer and a reader, or a table dropped and created again).
pub(crate) fn siblings(snapshot: &bowman_catalog::CatalogState, table: &TableDef) -> Vec<TableDef> {
    let Some(location) = table.location.as_deref() else { return Vec::new() };
    snapshot
        .databases
        .values()
        .flat_map(|d| d.tables.values())
        .filter(|t| {
            t.kind == bowman_catalog::TableKind::External
                && t.location.as_deref() == Some(location)
                && !(t.database == table.database && t.name == table.name)
        })
        .cloned()
        .collect()
}
