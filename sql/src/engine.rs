use std::sync::Arc;

use bowman_catalog::Catalog;
use bowman_catalog::provider::BowmanCatalogProvider;
use bowman_connector::ConnectorRegistry;
use bowman_connector_files::{CountingStore, FilesTableProviderFactory, S3Settings, StoreCalls};
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::error::{BowmanError, Result};
use crate::resolver::ConnectorResolver;
use crate::session::Session;

/// The name of Bowman's one DataFusion catalog (PostgreSQL's "database").
pub const CATALOG_NAME: &str = "bowman";

/// What the engine needs from the server's configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where managed tables live: `file:///abs/path` or `s3://bucket/prefix`.
    pub warehouse: String,
    /// Server-wide S3 settings, below table OPTIONS and above the `AWS_*` environment.
    pub s3: S3Settings,
    /// Memory all running statements may hold together before sorts, joins and aggregations
    /// spill to disk (shared fairly between those that can spill).
    pub memory_limit: usize,
    /// Turns a `CREATE USER ... PASSWORD` password into the hash the catalog stores (the front
    /// ends own the authentication scheme); `None` refuses CREATE USER.
    pub password_hasher: Option<fn(&str) -> String>,
    /// What the binary links in beyond Bowman's own file tables (see [`Components`]).
    pub compose: Compose,
}

/// Builds the engine's [`Components`] from its file-table factory (which the Delta and Redshift
/// connectors share); a closure, so the binary can hand connectors its own configuration.
#[derive(Clone)]
pub struct Compose(pub Arc<dyn Fn(&Arc<FilesTableProviderFactory>) -> Components + Send + Sync>);

impl Compose {
    pub fn new(f: impl Fn(&Arc<FilesTableProviderFactory>) -> Components + Send + Sync + 'static) -> Self {
        Compose(Arc::new(f))
    }
}

impl std::fmt::Debug for Compose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Compose")
    }
}

/// What a binary hands the engine beyond Bowman's own file tables: more connectors, and the
/// optimizer rules and extension planners that come with them (a remote database's pushdown).
/// The server composes them from the connector crates it is built with (cargo features), so a
/// scheduler or an executor links only what it needs, and `sql` links no driver.
#[derive(Default)]
pub struct Components {
    pub connectors: Vec<Arc<dyn bowman_connector::Connector>>,
    /// Appended after DataFusion's own rules, in this order.
    pub optimizer_rules: Vec<Arc<dyn datafusion::optimizer::OptimizerRule + Send + Sync>>,
    /// Asked, in this order, to plan extension nodes Bowman's own planners do not know.
    pub planners: Vec<Arc<dyn datafusion::physical_planner::ExtensionPlanner + Send + Sync>>,
}

impl Components {
    /// Nothing beyond file tables.
    pub fn none(_files: &Arc<FilesTableProviderFactory>) -> Components {
        Components::default()
    }
}

/// State shared by every session: catalog, connectors and the DataFusion runtime (object store
/// registry, memory pool, disk manager).
#[derive(Debug)]
pub struct Engine {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) resolver: Arc<ConnectorResolver>,
    pub(crate) runtime: Arc<RuntimeEnv>,
    pub(crate) warehouse: String,
    store_calls: Arc<StoreCalls>,
    pg_catalog: crate::pg_catalog::PgCatalogState,
    pub(crate) password_hasher: Option<fn(&str) -> String>,
    /// Functions built from data (`CREATE FUNCTION ... USING geodata`), shared by all sessions.
    pub(crate) functions: crate::functions::Functions,
    /// Reaches S3 for connectors and for function data, with the server's S3 settings.
    pub(crate) files: Arc<FilesTableProviderFactory>,
    /// Statements running and recently finished on this server (system.queries,
    /// pg_stat_activity), so replaced files are deleted once no statement that might read them
    /// is left.
    pub(crate) statements: Arc<crate::registry::QueryRegistry>,
    /// bowman.toml's users and superusers, and whether the server trusts every client.
    pub(crate) config_roles: Arc<std::sync::RwLock<crate::privileges::ConfigRoles>>,
    /// Where sessions start and RESET returns: bowman.toml's `[settings]` and `BOWMAN_SETTING_*`.
    setting_defaults: std::sync::RwLock<crate::settings::BowmanOptions>,
    /// The connectors' optimizer rules and extension planners (see [`Components`]).
    optimizer_rules: Vec<Arc<dyn datafusion::optimizer::OptimizerRule + Send + Sync>>,
    query_planner: Arc<crate::plan::BowmanQueryPlanner>,
}

impl Engine {
    pub fn new(catalog: Arc<Catalog>, config: EngineConfig) -> Result<Arc<Self>> {
        // DataFusion caches directory listings forever by default, so files written by another
        // Bowman node, by Spark, or dropped and rewritten here would stay invisible (or appear
        // deleted). Listing caches stay off until file sets are tracked by catalog version;
        // footer and statistics caches stay on (they are checked against each object's
        // size and modification time).
        let caches = CacheManagerConfig::default().with_list_files_cache_limit(0);
        let pool = Arc::new(datafusion::execution::memory_pool::FairSpillPool::new(config.memory_limit));
        let runtime = Arc::new(
            RuntimeEnvBuilder::new()
                .with_cache_manager(caches)
                .with_memory_pool(pool)
                .build()
                .map_err(BowmanError::from)?,
        );
        // Every store Bowman uses is counted (see `Engine::store_calls`): local disk here, S3
        // buckets as the files connector creates them.
        let store_calls = Arc::new(StoreCalls::default());
        let local: Arc<dyn object_store::ObjectStore> = Arc::new(CountingStore::new(
            Arc::new(object_store::local::LocalFileSystem::new()),
            store_calls.clone(),
        ));
        runtime.register_object_store(&url::Url::parse("file://").expect("valid URL"), local);
        let mut connectors = ConnectorRegistry::new();
        let files = Arc::new(FilesTableProviderFactory::new(config.s3.clone(), store_calls.clone()));
        connectors.register(files.clone());
        let components = (config.compose.0)(&files);
        for c in components.connectors {
            connectors.register(c);
        }
        let secret_options = connectors
            .names()
            .into_iter()
            .filter_map(|n| connectors.get(n))
            .flat_map(|c| c.options().iter().filter(|o| o.secret).map(|o| o.name.to_string()).collect::<Vec<_>>())
            .collect();
        let state = SessionStateBuilder::new()
            .with_config(session_config())
            .with_runtime_env(runtime.clone())
            .with_default_features()
            .build();
        let resolver = Arc::new(ConnectorResolver { connectors, catalog: catalog.clone(), state, opened: Default::default() });
        let warehouse = normalize_location(&config.warehouse)?;
        let pg_catalog = crate::pg_catalog::build(catalog.clone()).map_err(BowmanError::from)?;
        Ok(Arc::new(Engine {
            catalog,
            resolver,
            runtime,
            warehouse,
            store_calls,
            pg_catalog,
            password_hasher: config.password_hasher,
            functions: Default::default(),
            files,
            statements: Arc::new(crate::registry::QueryRegistry::new(secret_options)),
            config_roles: Default::default(),
            setting_defaults: Default::default(),
            optimizer_rules: components.optimizer_rules,
            query_planner: Arc::new(crate::plan::BowmanQueryPlanner::new(components.planners)),
        }))
    }

    /// Who bowman.toml makes users and superusers, and whether every client is trusted (no
    /// users at all): the server sets this at start-up, before any session.
    pub fn set_config_roles(&self, roles: crate::privileges::ConfigRoles) {
        *self.config_roles.write().expect("config roles") = roles;
    }

    /// The server-wide defaults of Bowman's settings (see [`crate::settings::server_defaults`]):
    /// the server sets them at start-up, before any session.
    pub fn set_setting_defaults(&self, defaults: crate::settings::BowmanOptions) {
        *self.setting_defaults.write().expect("setting defaults") = defaults;
    }

    pub fn setting_defaults(&self) -> crate::settings::BowmanOptions {
        self.setting_defaults.read().expect("setting defaults").clone()
    }

    /// Open a catalog table through its connector.
    pub(crate) async fn table_provider(
        &self,
        def: &bowman_catalog::TableDef,
    ) -> Result<Arc<dyn datafusion::catalog::TableProvider>> {
        use bowman_catalog::provider::TableResolver;
        Ok(self.resolver.resolve(def).await?)
    }

    /// `provider` (opened over `def`) as a table that commits its own writes, when its
    /// connector says it is one.
    pub(crate) fn own_log_table<'a>(
        &self,
        def: &bowman_catalog::TableDef,
        provider: &'a Arc<dyn datafusion::catalog::TableProvider>,
    ) -> Option<&'a dyn bowman_connector::OwnLogTable> {
        self.resolver.connectors.get(&def.format)?.own_log_table(provider.as_ref())
    }

    /// Whether `def`'s connector keeps its own log of live files (Delta).
    pub(crate) fn keeps_own_log(&self, def: &bowman_catalog::TableDef) -> bool {
        self.resolver.connectors.get(&def.format).is_some_and(|c| c.keeps_own_log())
    }

    /// Start the sweeper (see `crate::sweeper`): it deletes, now and then periodically, what
    /// commits retired and the files of writes that died (on this server or, with a shared
    /// catalog, on another). Call once at start-up, before clients connect.
    pub fn start_sweeper(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        crate::sweeper::start(self.clone())
    }

    /// The statements of this server (what system.queries shows).
    pub fn queries(&self) -> &Arc<crate::registry::QueryRegistry> {
        &self.statements
    }

    /// Calls made to object storage since start-up.
    pub fn store_calls(&self) -> &Arc<StoreCalls> {
        &self.store_calls
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// A new session (one per client connection), starting in the `default` database.
    pub fn new_session(self: &Arc<Self>) -> Session {
        let mut builder = SessionStateBuilder::new()
            .with_config(session_config().with_option_extension(self.setting_defaults()))
            .with_runtime_env(self.runtime.clone())
            .with_default_features()
            // Bowman's own nodes, then what the connectors bring (joins, aggregates and sorts
            // over tables of one remote database run there).
            .with_query_planner(self.query_planner.clone());
        // Appended after DataFusion's own rules, so filters and limits have gone as deep as
        // they go before whole subplans are sent away.
        for rule in &self.optimizer_rules {
            builder = builder.with_optimizer_rule(rule.clone());
        }
        let state: SessionState = builder
            // PostgreSQL's OID alias types (`::regclass`, `::regtype`) in client queries.
            .with_type_planner(Arc::new(datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner))
            // Every plan the session runs is checked against its role's privileges.
            .with_analyzer_rule(Arc::new(crate::privileges::CheckPrivileges {
                catalog: self.catalog.clone(),
                opened: self.resolver.opened.clone(),
                config: self.config_roles.clone(),
            }))
            .build();
        let ctx = SessionContext::new_with_state(state);
        let catalog = Arc::new(BowmanCatalogProvider::new(self.catalog.clone(), self.resolver.clone()));
        let temp_views = catalog.temp_views();
        ctx.register_catalog(CATALOG_NAME, catalog.clone());
        let information_schema = crate::information_schema::InformationSchema::new(
            ctx.state().catalog_list(),
            self.catalog.clone(),
            ctx.state().table_functions().clone(),
        );
        let _ = datafusion::catalog::CatalogProvider::register_schema(catalog.as_ref(), "information_schema", Arc::new(information_schema));
        if let Err(e) = crate::pg_catalog::install(&ctx, &self.pg_catalog) {
            tracing::error!(error = %e, "pg_catalog is unavailable in this session");
        }
        for udf in bowman_udfs::all_scalar_functions() {
            ctx.register_udf((*udf).clone());
        }
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::from(bowman_udfs::from_json::FromJsonFunc::new(|t| {
            crate::types::parse_type(t).map(|(t, _)| t).map_err(|e| e.message())
        })));
        for udf in self.functions.udfs() {
            ctx.register_udf((*udf).clone());
        }
        for udf in crate::limits::size_checked_functions(&ctx) {
            ctx.register_udf(udf);
        }
        for udaf in bowman_udfs::all_aggregate_functions() {
            ctx.register_udaf((*udaf).clone());
        }
        let mut session = Session::new(self.clone(), ctx);
        session.temp_views = temp_views;
        if let Err(e) = crate::registry::install(&session) {
            tracing::error!(error = %e, "system.queries and pg_stat_activity are unavailable in this session");
        }
        session
    }
}

fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG_NAME, bowman_catalog::DEFAULT_DATABASE)
        .with_create_default_catalog_and_schema(false)
        // Bowman registers its own information_schema (crate::information_schema), which
        // DataFusion would otherwise answer before asking any catalog.
        .with_information_schema(false);
    // One writer per output (per partition, for partitioned tables) instead of DataFusion's
    // default of at least four files per write: small writes should not make small files.
    // Files still roll over at `soft_max_rows_per_output_file`.
    config.options_mut().execution.minimum_parallel_output_files =
        datafusion::config::ConfigNonZeroUsize::try_new(1).expect("1 is not zero");
    // DataFusion's leaf-expression pushdown moves each field access `g['x']` of a struct column
    // below the projection that computes `g`, inlining the computation once per field read: the
    // issue's `SELECT g.city, g.state, ... FROM (SELECT geodata(lon, lat) AS g ...)` ran
    // geodata five times per row (apache/datafusion#25329, #25447, open in 55.2). Without it
    // the projection that computes `g` stays whole and runs once; what is lost is pushing struct
    // field reads into Parquet scans, which Bowman's flat event tables do not need.
    config.options_mut().optimizer.enable_leaf_expression_pushdown = false;
    config
}

/// Turn a user-written location into a URL: absolute paths become `file://` URLs; `s3://`,
/// `s3a://` and `file://` pass through (`s3a` is Hadoop's name for the same thing).
pub(crate) fn normalize_location(location: &str) -> Result<String> {
    let l = location.trim();
    let mut url = if let Some(rest) = l.strip_prefix("s3a://").or_else(|| l.strip_prefix("s3n://")) {
        format!("s3://{rest}")
    } else if l.starts_with("s3://") || l.starts_with("file:///") {
        l.to_string()
    } else if l.starts_with('/') {
        format!("file://{l}")
    } else {
        return Err(BowmanError::InvalidDefinition(format!(
            "LOCATION '{location}' is neither an absolute path, a file:/// URL nor an s3://bucket/prefix URL"
        )));
    };
    while url.ends_with('/') && !url.ends_with("://") && !url.ends_with(":///") {
        url.pop();
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(normalize_location("/data/x/").unwrap(), "file:///data/x");
        assert_eq!(normalize_location("s3a://b/p").unwrap(), "s3://b/p");
        assert_eq!(normalize_location("s3://b/p/").unwrap(), "s3://b/p");
        assert!(normalize_location("relative/path").is_err());
    }
}
