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
    /// A session sharing the engine's runtime (object stores, memory pool), handed to connectors.
    pub state: SessionState,
}

/// The DataFusion command that describes a stored table to its connector.
pub(crate) fn external_table_command(def: &TableDef) -> Result<CreateExternalTable> {
    let mut fields = crate::types::table_fields(def).map_err(|e| DataFusionError::Plan(e.message()))?;
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
        let connector = self.connector(table)?;
        let cmd = external_table_command(table)?;
        let provider = connector.create(&self.state, &cmd).await?;
        if table.tracked {
            return Ok(Arc::new(crate::tracked::TrackedTable::new(provider, table.clone())));
        }
        Ok(provider)
    }

    async fn resolve_view(&self, view: &bowman_catalog::ViewDef) -> Result<Arc<dyn TableProvider>> {
        let provider = crate::views::ViewProvider::new(view.clone(), false).map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Arc::new(provider))
    }

    async fn resolve_as_of(&self, table: &TableDef, as_of: &str) -> Result<Arc<dyn TableProvider>> {
        let connector = self.connector(table)?;
        let (_, as_of) = AsOf::split_name(&format!("{}@{as_of}", table.name))
            .ok_or_else(|| DataFusionError::Plan(format!("'{as_of}' is not a version or timestamp of {}", table.qualified_name())))?;
        let cmd = external_table_command(table)?;
        connector.create_as_of(&self.state, &cmd, &as_of).await
    }
}
