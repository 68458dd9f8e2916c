//! Functions built from data: `CREATE [OR REPLACE] FUNCTION geodata USING geodata OPTIONS
//! (countries '...', states '...', counties '...', zip_points '...', dma '...')`.
//!
//! The definition (kind and options; S3 secrets apart) lives in the catalog, so functions come
//! back after a restart and on every Bowman node sharing the catalog. Each node loads a
//! function's data once and shares it with all sessions; `CREATE OR REPLACE` loads the new data
//! completely before swapping it in, so a running query sees the old index or the new one.
//!
//! Why `CREATE FUNCTION ... USING kind OPTIONS`: it is the `CREATE TABLE ... USING` form users
//! already know for "Bowman builds this from data at these locations", the options are stored
//! and redacted like table options, and the function keeps the name queries call it by (Spark's
//! `CREATE FUNCTION name AS 'class' USING JAR '...'` names code, which Bowman never loads).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use bowman_catalog::{CatalogChange, FunctionDef};
use bowman_connector::{ConnectorError, ErrorKind, OptionSpec, split_secret_options};
use bowman_udfs::geodata::index::{PointLayer, PolygonLayer};
use bowman_udfs::geodata::{GeoIndex, GeodataFunc};
use datafusion::logical_expr::ScalarUDF;
use object_store::ObjectStoreExt;

use crate::engine::{Engine, normalize_location};
use crate::error::{BowmanError, Result};
use crate::output::Output;
use crate::session::Session;

/// The options of `USING geodata`.
const GEODATA_OPTIONS: &[OptionSpec] = &[
    OptionSpec::new("countries", "country polygons: CSV with a WKT column, GeoJSON or GeoParquet"),
    OptionSpec::new("states", "state polygons: CSV with a WKT column, GeoJSON or GeoParquet"),
    OptionSpec::new("counties", "county polygons: CSV with a WKT column, GeoJSON or GeoParquet"),
    OptionSpec::new("dma", "DMA polygons with dma_name and dma_number: CSV with a WKT column, GeoJSON or GeoParquet"),
    OptionSpec::new("zip_points", "ZIP centroids with zip and city: CSV with latitude and longitude, or GeoJSON / GeoParquet points"),
    OptionSpec::new("zip_max_km", "how far the nearest ZIP centroid may be (default 25)"),
];

/// A loaded function: its definition and the UDF every session registers.
struct Loaded {
    def: FunctionDef,
    udf: Arc<ScalarUDF>,
    index: Arc<RwLock<Arc<GeoIndex>>>,
}

/// The functions of one engine, loaded from the catalog.
#[derive(Default)]
pub(crate) struct Functions {
    loaded: RwLock<HashMap<String, Loaded>>,
    /// Serializes loading, so two sessions do not read the same layers twice.
    loading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Functions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.loaded.read().expect("functions").keys()).finish()
    }
}

impl Functions {
    /// The UDFs to register in a session.
    pub(crate) fn udfs(&self) -> Vec<Arc<ScalarUDF>> {
        self.loaded.read().expect("functions").values().map(|l| l.udf.clone()).collect()
    }

    fn is_current(&self, def: &FunctionDef) -> bool {
        self.loaded.read().expect("functions").get(&def.name).is_some_and(|l| l.def == *def)
    }
}

impl Engine {
    /// Load every catalog function this node has not loaded (or whose definition changed) and
    /// forget dropped ones. Cheap when nothing changed.
    pub async fn sync_functions(&self) -> Result<()> {
        let snapshot = self.catalog.snapshot();
        let stale = {
            let loaded = self.functions.loaded.read().expect("functions");
            snapshot.functions.values().any(|d| loaded.get(&d.name).is_none_or(|l| l.def != *d))
                || loaded.keys().any(|k| !snapshot.functions.contains_key(k))
        };
        if !stale {
            return Ok(());
        }
        let _guard = self.functions.loading.lock().await;
        for def in snapshot.functions.values() {
            if self.functions.is_current(def) {
                continue;
            }
            match self.load_function(def).await {
                Ok(index) => self.install(def.clone(), index),
                // One broken layer file must not stop the server or other functions.
                Err(e) => tracing::error!(function = %def.name, error = %e.message(), "cannot load function"),
            }
        }
        self.functions.loaded.write().expect("functions").retain(|k, _| snapshot.functions.contains_key(k));
        Ok(())
    }

    fn install(&self, def: FunctionDef, index: GeoIndex) {
        let mut loaded = self.functions.loaded.write().expect("functions");
        if let Some(l) = loaded.get_mut(&def.name) {
            // Same name: swap the index in place, so sessions holding the UDF see the new data.
            *l.index.write().expect("geodata index") = Arc::new(index);
            l.def = def;
            return;
        }
        let shared = Arc::new(RwLock::new(Arc::new(index)));
        let udf = Arc::new(ScalarUDF::from(GeodataFunc::new(def.name.clone(), shared.clone())));
        loaded.insert(def.name.clone(), Loaded { def, udf, index: shared });
    }

    async fn load_function(&self, def: &FunctionDef) -> Result<GeoIndex> {
        if def.kind != "geodata" {
            return Err(BowmanError::NotSupported(format!("functions of kind '{}' (known: geodata)", def.kind)));
        }
        let options = def.all_options();
        let zip_max_km = match options.get("zip_max_km") {
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|k| *k > 0.0)
                .ok_or_else(|| BowmanError::InvalidValue(format!("zip_max_km must be a positive number of km, not '{v}'")))?,
            None => 25.0,
        };
        let mut index = GeoIndex::default();
        for (key, slot) in [("countries", 0), ("states", 1), ("counties", 2), ("dma", 3), ("zip_points", 4)] {
            let Some(location) = options.get(key) else { continue };
            let bytes = self.read_layer(location, &options).await?;
            let what = format!("{} layer {key} ({location})", def.name);
            let built = tokio::task::spawn_blocking(move || -> std::result::Result<Layer, String> {
                if slot == 4 {
                    PointLayer::from_bytes(&bytes, &what, zip_max_km).map(Layer::Points).map_err(|e| e.0)
                } else {
                    PolygonLayer::from_bytes(&bytes, &what).map(Layer::Polygons).map_err(|e| e.0)
                }
            })
            .await
            .map_err(|e| BowmanError::Internal(e.to_string()))?
            .map_err(BowmanError::InvalidValue)?;
            match (slot, built) {
                (0, Layer::Polygons(l)) => index.countries = Some(l),
                (1, Layer::Polygons(l)) => index.states = Some(l),
                (2, Layer::Polygons(l)) => index.counties = Some(l),
                (3, Layer::Polygons(l)) => index.dma = Some(l),
                (_, Layer::Points(l)) => index.zips = Some(l),
                _ => unreachable!("slots match layer kinds"),
            }
        }
        Ok(index)
    }

    /// The bytes of a layer file on local disk or S3 (S3 settings from the function's options,
    /// then the server's).
    async fn read_layer(&self, location: &str, options: &BTreeMap<String, String>) -> Result<Vec<u8>> {
        let url = normalize_location(location)?;
        if let Some(path) = url.strip_prefix("file://") {
            return tokio::fs::read(path).await.map_err(|e| {
                let kind = if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::NotFound } else { ErrorKind::Io };
                datafusion::error::DataFusionError::from(ConnectorError::new(kind, format!("cannot read layer {location}: {e}"))).into()
            });
        }
        let state = self.resolver.state.clone();
        let table_url = self.files.prepare_location(&state, &url, options)?;
        let store = state.runtime_env().object_store(&table_url)?;
        let path = object_store::path::Path::from(table_url.prefix().as_ref().trim_end_matches('/'));
        let got = store.get(&path).await.map_err(|e| BowmanError::Io(format!("cannot read layer {location}: {e}")))?;
        Ok(got.bytes().await.map_err(|e| BowmanError::Io(format!("cannot read layer {location}: {e}")))?.to_vec())
    }
}

enum Layer {
    Polygons(PolygonLayer),
    Points(PointLayer),
}

/// `CREATE [OR REPLACE] FUNCTION [IF NOT EXISTS] name USING kind OPTIONS (...)`.
pub(crate) async fn create(
    session: &mut Session,
    name: String,
    kind: String,
    options: BTreeMap<String, String>,
    or_replace: bool,
    if_not_exists: bool,
) -> Result<Output> {
    let kind = kind.to_ascii_lowercase();
    if kind != "geodata" {
        return Err(BowmanError::NotSupported(format!("CREATE FUNCTION ... USING {kind} (known: geodata)")));
    }
    let specs = bowman_connector_files::with_s3_options(GEODATA_OPTIONS);
    let options: BTreeMap<String, String> = options.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    for k in options.keys() {
        if !specs.iter().any(|s| s.name == k) {
            return Err(BowmanError::InvalidValue(format!(
                "USING geodata has no option '{k}'; it takes countries, states, counties, dma, zip_points, zip_max_km and S3 settings"
            )));
        }
    }
    if !GEODATA_OPTIONS.iter().any(|s| s.name != "zip_max_km" && options.contains_key(s.name)) {
        return Err(BowmanError::InvalidValue("USING geodata needs at least one layer (countries, states, counties, dma or zip_points)".into()));
    }
    let (plain, secret) = split_secret_options(specs, &options);
    let def = FunctionDef {
        name: name.to_ascii_lowercase(),
        kind,
        options: plain,
        secret_options: secret,
        created_at: crate::ddl::now_millis(),
        owner: session.owner(),
    };
    // Layers on the server's disk are server files.
    for (key, value) in &options {
        if GEODATA_OPTIONS.iter().any(|s| s.name == key && s.name != "zip_max_km") {
            session.require_server_files(&normalize_location(value)?, false)?;
        }
    }
    if session.engine.catalog.snapshot().functions.contains_key(&def.name) {
        if if_not_exists {
            return Ok(Output::command("CREATE FUNCTION"));
        }
        if !or_replace {
            return Err(bowman_catalog::CatalogError::FunctionExists(def.name).into());
        }
        session.require_function_owner(&def.name)?;
    }
    // Load (and so check) every layer before anything is stored.
    session.notice(format!("loading the layers of {}", def.name));
    let started = std::time::Instant::now();
    let index = session.engine.load_function(&def).await?;
    session.engine.catalog.apply(CatalogChange::CreateFunction { def: def.clone(), or_replace, if_not_exists }).await?;
    session.engine.install(def.clone(), index);
    session.notice(format!("{} ready in {:.1}s", def.name, started.elapsed().as_secs_f64()));
    session.register_functions();
    Ok(Output::command("CREATE FUNCTION"))
}

/// `DROP FUNCTION [IF EXISTS] name`.
pub(crate) async fn drop(session: &mut Session, name: String, if_exists: bool) -> Result<Output> {
    let name = name.to_ascii_lowercase();
    session.require_function_owner(&name)?;
    session.engine.catalog.apply(CatalogChange::DropFunction { name: name.clone(), if_exists }).await?;
    session.engine.sync_functions().await?;
    session.ctx.deregister_udf(&name);
    Ok(Output::command("DROP FUNCTION"))
}
