//! DataFusion's catalog traits over the catalog snapshot.
//!
//! DataFusion asks for schema names synchronously, so these adapters read the in-memory
//! [`CatalogState`](crate::CatalogState) held by [`Catalog`]; the session refreshes that snapshot
//! from the store before planning each statement.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};

use crate::model::TableDef;
use crate::store::Catalog;

/// Turns a stored table definition into something DataFusion can scan (and insert into).
/// Implemented by the `sql` crate over the connector registry.
#[async_trait]
pub trait TableResolver: Send + Sync + std::fmt::Debug {
    async fn resolve(&self, table: &TableDef) -> Result<Arc<dyn TableProvider>>;
}

/// The `bowman` catalog: one schema per Bowman database.
#[derive(Debug)]
pub struct BowmanCatalogProvider {
    catalog: Arc<Catalog>,
    resolver: Arc<dyn TableResolver>,
}

impl BowmanCatalogProvider {
    pub fn new(catalog: Arc<Catalog>, resolver: Arc<dyn TableResolver>) -> Self {
        Self { catalog, resolver }
    }
}

impl CatalogProvider for BowmanCatalogProvider {
    fn schema_names(&self) -> Vec<String> {
        self.catalog.snapshot().databases.keys().cloned().collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let snapshot = self.catalog.snapshot();
        snapshot.database(name)?;
        Some(Arc::new(DatabaseSchemaProvider {
            catalog: self.catalog.clone(),
            resolver: self.resolver.clone(),
            database: name.to_string(),
        }))
    }
}

/// One Bowman database seen as a DataFusion schema.
#[derive(Debug)]
pub struct DatabaseSchemaProvider {
    catalog: Arc<Catalog>,
    resolver: Arc<dyn TableResolver>,
    database: String,
}

#[async_trait]
impl SchemaProvider for DatabaseSchemaProvider {
    fn table_names(&self) -> Vec<String> {
        self.catalog
            .snapshot()
            .database(&self.database)
            .map(|d| d.tables.keys().cloned().collect())
            .unwrap_or_default()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let snapshot = self.catalog.snapshot();
        let Some(def) = snapshot.table(&self.database, name) else {
            return Ok(None);
        };
        self.resolver.resolve(def).await.map(Some)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.catalog.snapshot().table(&self.database, name).is_some()
    }
}
