//! DataFusion's catalog traits over the catalog snapshot.
//!
//! DataFusion asks for schema names synchronously, so these adapters read the in-memory
//! [`CatalogState`](crate::CatalogState) held by [`Catalog`]; the session syncs that snapshot
//! with the store's log before planning each statement, and a table a data commit made stale is
//! reloaded when it is opened here.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};

use crate::model::{TableDef, ViewDef};
use crate::store::Catalog;

/// Turns a stored table definition into something DataFusion can scan (and insert into).
/// Implemented by the `sql` crate over the connector registry.
#[async_trait]
pub trait TableResolver: Send + Sync + std::fmt::Debug {
    async fn resolve(&self, table: &TableDef) -> Result<Arc<dyn TableProvider>>;

    /// Open the table as of an earlier state. `as_of` is what follows the `@` in the name the
    /// SQL layer gave a `VERSION AS OF` / `TIMESTAMP AS OF` reference (`events@v3`).
    async fn resolve_as_of(&self, table: &TableDef, as_of: &str) -> Result<Arc<dyn TableProvider>>;

    /// Open a view: a provider whose scan plans the view's stored query.
    async fn resolve_view(&self, view: &ViewDef) -> Result<Arc<dyn TableProvider>> {
        Err(DataFusionError::NotImplemented(format!("views ({})", view.qualified_name())))
    }
}

/// `events@v3` -> (`events`, `v3`).
fn split_as_of(name: &str) -> Option<(&str, &str)> {
    name.rsplit_once('@').filter(|(base, tail)| !base.is_empty() && !tail.is_empty())
}

/// The `bowman` catalog: one schema per Bowman database, plus system schemas the SQL layer
/// registers (`pg_catalog`), which shadow databases of the same name.
#[derive(Debug)]
pub struct BowmanCatalogProvider {
    catalog: Arc<Catalog>,
    resolver: Arc<dyn TableResolver>,
    system: std::sync::RwLock<std::collections::BTreeMap<String, Arc<dyn SchemaProvider>>>,
    temp: TempViews,
}

/// Session-scoped tables (`CREATE TEMPORARY VIEW ... USING`): never in the catalog, visible by
/// their bare name from every database of the session, shadowing stored tables of that name.
pub type TempViews = Arc<std::sync::RwLock<std::collections::BTreeMap<String, Arc<dyn TableProvider>>>>;

impl BowmanCatalogProvider {
    pub fn new(catalog: Arc<Catalog>, resolver: Arc<dyn TableResolver>) -> Self {
        Self { catalog, resolver, system: Default::default(), temp: Default::default() }
    }

    /// This session's temporary views.
    pub fn temp_views(&self) -> TempViews {
        self.temp.clone()
    }
}

impl CatalogProvider for BowmanCatalogProvider {
    /// The default database is listed under its PostgreSQL name, `public` (what
    /// `information_schema` shows); `default` still resolves in [`Self::schema`].
    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .catalog
            .snapshot()
            .databases
            .keys()
            .map(|n| if n == crate::DEFAULT_DATABASE { crate::PUBLIC_SCHEMA.to_string() } else { n.clone() })
            .collect();
        names.extend(self.system.read().expect("system schemas").keys().cloned());
        names
    }

    fn register_schema(&self, name: &str, schema: Arc<dyn SchemaProvider>) -> Result<Option<Arc<dyn SchemaProvider>>> {
        Ok(self.system.write().expect("system schemas").insert(name.to_string(), schema))
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if let Some(system) = self.system.read().expect("system schemas").get(name) {
            return Some(system.clone());
        }
        let snapshot = self.catalog.snapshot();
        snapshot.database(name)?;
        Some(Arc::new(DatabaseSchemaProvider {
            catalog: self.catalog.clone(),
            resolver: self.resolver.clone(),
            database: crate::canonical_database(name).to_string(),
            temp: self.temp.clone(),
        }))
    }
}

/// One Bowman database seen as a DataFusion schema.
#[derive(Debug)]
pub struct DatabaseSchemaProvider {
    catalog: Arc<Catalog>,
    resolver: Arc<dyn TableResolver>,
    database: String,
    temp: TempViews,
}

#[async_trait]
impl SchemaProvider for DatabaseSchemaProvider {
    fn table_names(&self) -> Vec<String> {
        self.catalog
            .snapshot()
            .database(&self.database)
            .map(|d| d.tables.keys().chain(d.views.keys()).cloned().collect())
            .unwrap_or_default()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        if let Some(t) = self.temp.read().expect("temp views").get(name) {
            return Ok(Some(t.clone()));
        }
        // A table is opened as it is now: reloaded first if another node committed to it.
        let fresh = |name: &str| {
            let (catalog, database) = (self.catalog.clone(), self.database.clone());
            let name = name.to_string();
            async move { catalog.table(&database, &name).await.map_err(|e| DataFusionError::External(Box::new(e))) }
        };
        if let Some(def) = fresh(name).await? {
            return self.resolver.resolve(&def).await.map(Some);
        }
        if let Some(view) = self.catalog.snapshot().view(&self.database, name) {
            return self.resolver.resolve_view(view).await.map(Some);
        }
        match split_as_of(name) {
            Some((base, as_of)) => match fresh(base).await? {
                Some(def) => self.resolver.resolve_as_of(&def, as_of).await.map(Some),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        if self.temp.read().expect("temp views").contains_key(name) {
            return true;
        }
        let snapshot = self.catalog.snapshot();
        snapshot.table(&self.database, name).is_some()
            || snapshot.view(&self.database, name).is_some()
            || split_as_of(name).is_some_and(|(base, _)| snapshot.table(&self.database, base).is_some())
    }
}
