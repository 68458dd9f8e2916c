//! Deleting files no reader needs any more, from catalog rows, so that a restart forgets
//! nothing and several servers on one catalog can share the work.
//!
//! Three kinds of garbage:
//! - *Retired directories* (`bowman_retired_dirs`): commit directories an overwrite replaced.
//!   Readers that planned against the old snapshot may still read them, so they stay for
//!   `file_retention` after their retirement; on a server whose catalog nobody else uses they
//!   go as soon as the statements that started before the commit are done.
//! - *Retired files* of external tables (`bowman_retired_files`), likewise.
//! - *Orphaned commit directories*: written by a write that never committed (it failed, or its
//!   server died). Every write registers an intent (its commit id and a lease it renews) before
//!   it produces a file; a directory that is not live, not retired and whose write has no live
//!   intent is garbage.
//!
//! Safety with several servers: a retired row is claimed by one sweeper at a time (an `UPDATE
//! ... RETURNING` that marks it), every deletion is idempotent (a missing file counts as
//! deleted), a directory live in the catalog read *after* the listing is never touched, and an
//! intent whose lease has not ended protects its write's directories on every node.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bowman_catalog::{Catalog, CatalogChange, LiveDir, RetiredClaim, RetiredDir, TableDef, WriteIntent};
use datafusion::execution::runtime_env::RuntimeEnv;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;

use crate::engine::Engine;
use crate::error::{BowmanError, Result};
use crate::session::Session;

/// How long retired files stay for queries that planned against the old snapshot, unless the
/// server or a session says otherwise (the `file_retention` setting's default).
pub(crate) const DEFAULT_RETENTION_MS: u64 = 60_000;

/// How the sweeper runs: the server's settings, read once.
#[derive(Debug, Clone)]
pub struct SweeperConfig {
    /// Between two passes (`BOWMAN_SWEEP_INTERVAL`, default 30 s).
    pub interval: Duration,
    /// `BOWMAN_FILE_RETENTION`, an older spelling of the server's `file_retention` setting that
    /// wins over it when set (see [`server_file_retention_ms`]).
    pub retention_override_ms: Option<u64>,
    /// How long a write's intent protects its files without a renewal (`BOWMAN_WRITE_LEASE`,
    /// default 60 s; renewed every third of it). A write dead for longer is collected.
    pub lease_ms: u64,
}

fn env_duration_ms(name: &str, default_ms: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => match crate::settings::parse_duration_ms(&v) {
            Some(ms) => ms.min(crate::settings::MAX_DURATION_MS),
            None => {
                tracing::warn!(setting = name, value = %v, default_ms, "not a duration (use 500ms, 30s, 5min); using the default");
                default_ms
            }
        },
        Err(_) => default_ms,
    }
}

/// The server's sweeper settings (from the environment, once per process).
pub fn config() -> &'static SweeperConfig {
    static CONFIG: OnceLock<SweeperConfig> = OnceLock::new();
    CONFIG.get_or_init(|| SweeperConfig {
        interval: Duration::from_millis(env_duration_ms("BOWMAN_SWEEP_INTERVAL", 30_000).max(10)),
        retention_override_ms: std::env::var_os("BOWMAN_FILE_RETENTION").map(|_| env_duration_ms("BOWMAN_FILE_RETENTION", DEFAULT_RETENTION_MS)),
        lease_ms: env_duration_ms("BOWMAN_WRITE_LEASE", 60_000).max(100),
    })
}

/// The server-wide `file_retention`: what this server keeps retired files for at most. It is
/// the server's default of the `file_retention` setting (`[settings]` in bowman.toml,
/// `BOWMAN_SETTING_FILE_RETENTION`), or `BOWMAN_FILE_RETENTION` when that is set.
pub(crate) fn server_file_retention_ms(engine: &Engine) -> u64 {
    config().retention_override_ms.unwrap_or_else(|| engine.setting_defaults().file_retention().as_millis() as u64)
}

/// The retention a session asked for (`SET file_retention`), else the server's. A session can
/// have its retired files deleted sooner; the sweeper deletes them after the server's
/// retention at the latest.
pub(crate) fn session_file_retention_ms(session: &Session) -> u64 {
    (session.bowman_settings().file_retention().as_millis() as u64).min(server_file_retention_ms(&session.engine))
}

/// Which server this is, for the intents it registers (operators read it; leases decide).
fn node_name() -> &'static str {
    static NODE: OnceLock<String> = OnceLock::new();
    NODE.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        format!("{host}/{}", std::process::id())
    })
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

// ---------------------------------------------------------------------------------------------
// Write intents

/// A write in progress, registered in the catalog: renews its lease while it lives; dropped
/// without a commit, it ends the lease so a sweeper collects the write's files.
pub(crate) struct WriteIntentGuard {
    catalog: Arc<Catalog>,
    commit: String,
    renewal: tokio::task::JoinHandle<()>,
    /// The lease as last registered or renewed (ms since the epoch).
    valid_until: Arc<std::sync::atomic::AtomicI64>,
}

impl WriteIntentGuard {
    /// Refuse to commit a write whose lease is about to end (or ended: its renewals failed, so
    /// a sweeper on another server may be deleting its files). A third of the lease is left
    /// for the commit itself.
    pub(crate) fn check_lease(&self, table: &str) -> Result<()> {
        let margin = config().lease_ms as i64 / 3;
        if now_ms() + margin < self.valid_until.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        Err(bowman_catalog::CatalogError::Store(format!(
            "the write to {table} could not renew its lease in the catalog (BOWMAN_WRITE_LEASE), so its files may be \
             collected as those of a dead write: nothing was committed; check the catalog database and run the statement again"
        ))
        .into())
    }
}

impl std::fmt::Debug for WriteIntentGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteIntentGuard").field("commit", &self.commit).finish()
    }
}

impl Drop for WriteIntentGuard {
    fn drop(&mut self) {
        self.renewal.abort();
        // After a commit the intent is gone already and this changes nothing.
        let (catalog, commit) = (self.catalog.clone(), std::mem::take(&mut self.commit));
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = catalog.abandon_write(&commit).await {
                    tracing::warn!(commit, error = %e, "cannot end a write's lease; its files are collected once it expires");
                }
            });
        }
    }
}

/// Register a write to `def` under `commit` before it produces files.
pub(crate) async fn register_write(engine: &Engine, def: &TableDef, commit: &str) -> Result<WriteIntentGuard> {
    let lease = config().lease_ms as i64;
    let now = now_ms();
    let intent = WriteIntent {
        commit: commit.to_string(),
        database: def.database.clone(),
        table: def.name.clone(),
        node: node_name().to_string(),
        started_at: now,
        lease_until: now + lease,
    };
    engine.catalog.register_write(&intent).await?;
    let catalog = engine.catalog.clone();
    let id = commit.to_string();
    let valid_until = Arc::new(std::sync::atomic::AtomicI64::new(intent.lease_until));
    let renewed = valid_until.clone();
    let renewal = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis((lease as u64 / 3).max(10)));
        tick.tick().await;
        loop {
            tick.tick().await;
            let until = now_ms() + lease;
            match catalog.renew_write(&id, until).await {
                Ok(true) => renewed.store(until, std::sync::atomic::Ordering::SeqCst),
                // Committed (or given up): nothing left to protect.
                Ok(false) => return,
                Err(e) => tracing::warn!(commit = %id, error = %e, "cannot renew a write's lease; retrying"),
            }
        }
    });
    Ok(WriteIntentGuard { catalog: engine.catalog.clone(), commit: commit.to_string(), renewal, valid_until })
}

// ---------------------------------------------------------------------------------------------
// After a commit

/// What a commit retired goes as soon as no reader can need it: after every statement of this
/// server that started before the commit has finished (with a catalog shared between servers,
/// after the session's `file_retention`), and at most `file_retention` later. The catalog rows
/// make this an acceleration only: the sweeper deletes whatever a restart cut short.
pub(crate) fn after_commit(engine: &Arc<Engine>, retention: u64, def: &TableDef, retired: Vec<LiveDir>, retired_files: Vec<String>) {
    let Some(location) = def.location.clone() else { return };
    // Retired files an earlier clean-up did not get to (the server stopped first).
    let now = now_ms();
    let mut files = retired_files;
    for r in &def.retired {
        if now - r.retired_at >= retention as i64 && !files.contains(&r.path) {
            files.push(r.path.clone());
        }
    }
    if retired.is_empty() && files.is_empty() {
        return;
    }
    let engine = engine.clone();
    let started_before = engine.statements.next_id();
    let (database, name) = (def.database.clone(), def.name.clone());
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(retention);
        if engine.catalog.is_shared() {
            tokio::time::sleep_until(deadline).await;
        } else {
            while engine.statements.any_running_before(started_before) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if !retired.is_empty() {
            let dirs = retired.into_iter().map(|d| d.dir).collect();
            let claim = RetiredClaim::Dirs { location: location.clone(), dirs };
            if let Err(e) = delete_retired(&engine, &claim, false).await {
                tracing::warn!(error = %e.message(), "could not delete replaced files; the sweeper retries");
            }
        }
        delete_retired_files(&engine, &database, &name, &location, files).await;
    });
}

// ---------------------------------------------------------------------------------------------
// The sweeper

/// Start the sweeper: one pass now (with what an earlier run of this server left), then one
/// every [`SweeperConfig::interval`]. Call once at start-up, before clients connect.
pub fn start(engine: Arc<Engine>) -> tokio::task::JoinHandle<()> {
    let snapshot_at = now_ms();
    tokio::spawn(async move {
        startup_pass(&engine, snapshot_at).await;
        let mut tick = tokio::time::interval(config().interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            pass(&engine).await;
        }
    })
}

/// The first pass: every tracked table is listed once. With a catalog only this server uses,
/// nothing of an earlier run can still be reading or writing: everything retired before
/// `started` goes now, and every intent registered before it is dead.
async fn startup_pass(engine: &Arc<Engine>, started: i64) {
    let lease = config().lease_ms as i64;
    let local = !engine.catalog.is_shared();
    let retired_before = if local { started } else { started - server_file_retention_ms(engine) as i64 };
    // Claims an earlier run of a server whose catalog nobody else uses still held when it died
    // (it was deleting these very directories) lapse now, not a lease later.
    if let Err(e) = delete_retired(engine, &RetiredClaim::RetiredBefore(retired_before), local).await {
        tracing::warn!(error = %e.message(), "cannot delete retired directories");
    }
    let snapshot = match engine.catalog.refresh().await {
        Ok(s) => s,
        Err(e) => return tracing::warn!(error = %e, "cannot read the catalog to clear dead writes"),
    };
    let tables: Vec<TableDef> = snapshot.databases.values().flat_map(|d| d.tables.values()).filter(|t| t.tracked).cloned().collect();
    let (before, dead_before) = if local { (started, Some(started)) } else { (started - lease, None) };
    for def in &tables {
        sweep_orphans(engine, def, before, dead_before).await;
    }
    forget_dead_intents(engine, dead_before, before, None).await;
    sweep_expired_files(engine).await;
}

/// A periodic pass: retired rows past retention, external files past retention, and the
/// directories of writes whose lease ended.
pub(crate) async fn pass(engine: &Arc<Engine>) {
    let now = now_ms();
    let retention = server_file_retention_ms(engine) as i64;
    if let Err(e) = delete_retired(engine, &RetiredClaim::RetiredBefore(now - retention), false).await {
        tracing::warn!(error = %e.message(), "cannot delete retired directories");
    }
    sweep_expired_files(engine).await;
    let intents = match engine.catalog.write_intents().await {
        Ok(i) => i,
        Err(e) => return tracing::warn!(error = %e, "cannot read write intents"),
    };
    let before = now - config().lease_ms as i64;
    let mut tables: Vec<(String, String)> =
        intents.iter().filter(|i| i.lease_until < now && bowman_commit_millis(&i.commit) < Some(before)).map(|i| (i.database.clone(), i.table.clone())).collect();
    tables.sort();
    tables.dedup();
    if tables.is_empty() {
        return;
    }
    let snapshot = match engine.catalog.refresh().await {
        Ok(s) => s,
        Err(e) => return tracing::warn!(error = %e, "cannot read the catalog to clear dead writes"),
    };
    for (database, name) in &tables {
        if let Some(def) = snapshot.table(database, name).filter(|t| t.tracked) {
            sweep_orphans(engine, def, before, None).await;
        }
    }
    forget_dead_intents(engine, None, before, Some(&tables)).await;
}

/// Claim, delete and forget retired directories. Each is checked against the catalog as it is
/// now: a directory live again (never happens: commits only add new ones) is left alone.
/// `void_claims` takes rows other claims still hold (only for rows no running server can hold).
async fn delete_retired(engine: &Arc<Engine>, which: &RetiredClaim, void_claims: bool) -> Result<()> {
    let now = now_ms();
    let lapsed_by = if void_claims { i64::MAX } else { now };
    let claimed = engine.catalog.claim_retired_dirs(which, lapsed_by, now + config().lease_ms as i64).await?;
    if claimed.is_empty() {
        return Ok(());
    }
    let snapshot = engine.catalog.refresh().await?;
    let mut done = Vec::new();
    for d in claimed {
        let owner = snapshot
            .databases
            .values()
            .flat_map(|db| db.tables.values())
            .filter(|t| t.location.as_deref() == Some(d.location.as_str()))
            .find(|t| t.database == d.database && t.name == d.table)
            .or_else(|| snapshot.databases.values().flat_map(|db| db.tables.values()).find(|t| t.location.as_deref() == Some(d.location.as_str())));
        let Some(owner) = owner else {
            // The table is gone, and DROP TABLE deleted its location with it.
            done.push(d);
            continue;
        };
        if owner.live.iter().any(|l| l.dir == d.dir) {
            tracing::error!(table = %owner.qualified_name(), dir = %d.dir, "a retired directory is live; keeping it");
            done.push(d);
            continue;
        }
        match delete_retired_dir(engine, owner, &d).await {
            Ok(()) => done.push(d),
            Err(e) => tracing::warn!(table = %owner.qualified_name(), error = %e.message(), "cannot delete a retired directory; retrying later"),
        }
    }
    if !done.is_empty() {
        tracing::debug!(directories = done.len(), "deleted retired directories");
        engine.catalog.forget_retired_dirs(&done).await?;
    }
    Ok(())
}

async fn delete_retired_dir(engine: &Engine, owner: &TableDef, d: &RetiredDir) -> Result<()> {
    // Opening the table registers its store (an S3 bucket's client).
    engine.table_provider(owner).await?;
    delete_dir(&engine.runtime, &d.location, &d.relative()).await
}

/// Retired files of external tables past the server's retention.
async fn sweep_expired_files(engine: &Arc<Engine>) {
    let snapshot = engine.catalog.snapshot();
    let before = now_ms() - server_file_retention_ms(engine) as i64;
    for def in snapshot.databases.values().flat_map(|d| d.tables.values()) {
        let due: Vec<String> = def.retired.iter().filter(|r| r.retired_at <= before).map(|r| r.path.clone()).collect();
        let Some(location) = def.location.as_deref() else { continue };
        if due.is_empty() {
            continue;
        }
        if let Err(e) = engine.table_provider(def).await {
            tracing::warn!(table = %def.qualified_name(), error = %e.message(), "cannot open the table to delete retired files");
            continue;
        }
        delete_retired_files(engine, &def.database, &def.name, location, due).await;
    }
}

/// Delete retired files of an external table, then forget them (another server doing the same
/// at once is harmless: both deletions succeed and forgetting twice changes nothing).
async fn delete_retired_files(engine: &Engine, database: &str, name: &str, location: &str, files: Vec<String>) {
    if files.is_empty() {
        return;
    }
    let mut deleted = Vec::new();
    for f in files {
        match delete_file(&engine.runtime, location, &f).await {
            Ok(()) => deleted.push(f),
            Err(e) => tracing::warn!(error = %e.message(), "could not delete a replaced file; it stays hidden"),
        }
    }
    if !deleted.is_empty() {
        let change = CatalogChange::ForgetRetired { database: database.to_string(), name: name.to_string(), paths: deleted };
        if let Err(e) = engine.catalog.apply(change).await {
            tracing::warn!(error = %e, "could not record deleted files");
        }
    }
}

/// Delete the orphaned commit directories of `def`: created before `before_ms`, and neither
/// live, nor retired, nor written by a write whose intent is alive (see [`is_dead`]). The catalog is read after
/// the listing, so a write that commits meanwhile is seen live.
async fn sweep_orphans(engine: &Arc<Engine>, def: &TableDef, before_ms: i64, dead_before: Option<i64>) {
    let Some(location) = def.location.as_deref() else { return };
    let name = def.qualified_name();
    if let Err(e) = engine.table_provider(def).await {
        return tracing::warn!(table = %name, error = %e.message(), "cannot open the table to clear dead writes");
    }
    let dirs = match commit_dirs(&engine.runtime, location, def.partition_columns.len()).await {
        Ok(d) => d,
        Err(e) => return tracing::warn!(table = %name, error = %e.message(), "cannot list the table to clear dead writes"),
    };
    let now = now_ms();
    let state = async {
        let intents = engine.catalog.write_intents().await?;
        let snapshot = engine.catalog.refresh().await?;
        let retired = engine.catalog.retired_dirs().await?;
        Ok::<_, bowman_catalog::CatalogError>((intents, snapshot, retired))
    };
    let (intents, snapshot, retired) = match state.await {
        Ok(s) => s,
        Err(e) => return tracing::warn!(table = %name, error = %e, "cannot read the catalog to clear dead writes"),
    };
    let Some(current) = snapshot.table(&def.database, &def.name).filter(|t| t.location == def.location) else { return };
    let protected: Vec<&str> = intents.iter().filter(|i| !is_dead(i, now, dead_before)).map(|i| i.commit.as_str()).collect();
    let retired: std::collections::HashSet<&str> = retired.iter().filter(|r| r.location == location).map(|r| r.dir.as_str()).collect();
    let dead: Vec<String> = dead_dirs(current, dirs.iter().map(String::as_str), before_ms)
        .into_iter()
        .filter(|rel| {
            let dir = rel.rsplit('/').next().and_then(|d| d.strip_prefix("_commit=")).unwrap_or_default();
            !retired.contains(dir) && !protected.iter().any(|c| dir.starts_with(c))
        })
        .collect();
    let mut removed = 0;
    for relative in &dead {
        match delete_dir(&engine.runtime, location, relative).await {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!(table = %name, error = %e.message(), "cannot delete a dead write"),
        }
    }
    if removed > 0 {
        tracing::info!(table = %name, directories = removed, "deleted the files of writes that never committed");
    }
}

/// Whether an intent's write is dead: its lease ended, or it was registered before
/// `dead_before` (by an earlier run of a server whose catalog nobody else uses).
fn is_dead(i: &WriteIntent, now: i64, dead_before: Option<i64>) -> bool {
    i.lease_until < now || dead_before.is_some_and(|t| i.started_at < t)
}

/// Forget intents whose writes are dead and whose directories a sweep just covered: expired
/// (or, with `dead_before`, registered by an earlier run of this server) and older than
/// `before_ms`; only for `tables` when given.
async fn forget_dead_intents(engine: &Engine, dead_before: Option<i64>, before_ms: i64, tables: Option<&[(String, String)]>) {
    let Ok(intents) = engine.catalog.write_intents().await else { return };
    let now = now_ms();
    let dead: Vec<String> = intents
        .into_iter()
        .filter(|i| is_dead(i, now, dead_before))
        .filter(|i| bowman_commit_millis(&i.commit).is_some_and(|ms| ms < before_ms))
        .filter(|i| tables.is_none_or(|t| t.iter().any(|(d, n)| d == &i.database && n == &i.table)))
        .map(|i| i.commit)
        .collect();
    if !dead.is_empty() {
        if let Err(e) = engine.catalog.forget_writes(&dead).await {
            tracing::warn!(error = %e, "cannot forget dead writes");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Deleting

/// Delete one file of a table (a missing file counts as deleted).
pub(crate) async fn delete_file(runtime: &RuntimeEnv, location: &str, relative: &str) -> Result<()> {
    let url = bowman_connector_files::table_url(location)?;
    let store = runtime.object_store(&url)?;
    // Both halves come from listings, so they are already in object_store's encoding.
    let joined = format!("{}/{relative}", url.prefix().as_ref().trim_end_matches('/'));
    let path = object_store::path::Path::parse(joined.trim_start_matches('/'))
        .map_err(|e| BowmanError::Io(format!("cannot delete {location}/{relative}: {e}")))?;
    match store.delete(&path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(BowmanError::Io(format!("cannot delete {location}/{relative}: {e}"))),
    }
}

/// Delete a directory of a table, given relative to its location as listings spell it
/// (`dt=a%2Fb/_commit=...`: partition values stay encoded, so `..%2F..` is one directory name,
/// never a way out of the table). A missing directory counts as deleted.
pub(crate) async fn delete_dir(runtime: &RuntimeEnv, location: &str, relative: &str) -> Result<()> {
    let segments: Vec<&str> = relative.split('/').collect();
    if segments.iter().any(|s| s.is_empty() || *s == "." || *s == ".." || s.contains('\\')) {
        return Err(BowmanError::Internal(format!("refusing to delete {relative:?} under {location}")));
    }
    let url = bowman_connector_files::table_url(location)?;
    if url.scheme() == "file" {
        let root = local_root(&url, location)?;
        let dir = segments.iter().fold(root, |p, s| p.join(s));
        return match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BowmanError::Io(format!("cannot delete {}: {e}", dir.display()))),
        };
    }
    let store = runtime.object_store(&url)?;
    let joined = format!("{}/{relative}", url.prefix().as_ref().trim_end_matches('/'));
    let prefix = object_store::path::Path::parse(joined.trim_start_matches('/'))
        .map_err(|e| BowmanError::Io(format!("cannot delete {location}/{relative}: {e}")))?;
    delete_prefix(store.as_ref(), &prefix, &format!("{location}/{relative}")).await
}

/// The directory of a `file://` table location.
fn local_root(url: &datafusion::datasource::listing::ListingTableUrl, location: &str) -> Result<std::path::PathBuf> {
    url::Url::parse(url.as_str())
        .ok()
        .and_then(|u| u.to_file_path().ok())
        .ok_or_else(|| BowmanError::Internal(format!("{location} is not a local path")))
}

/// Delete every object under `prefix` of a store (`what` names it in errors).
pub(crate) async fn delete_prefix(store: &dyn object_store::ObjectStore, prefix: &object_store::path::Path, what: &str) -> Result<()> {
    let locations = store.list(Some(prefix)).map_ok(|m| m.location).boxed();
    store
        .delete_stream(locations)
        .try_collect::<Vec<_>>()
        .await
        .map_err(|e| BowmanError::Io(format!("cannot delete {what}: {e}")))?;
    Ok(())
}

/// The creation time (ms since the epoch) of a `_commit` value Bowman wrote: `<13 digits>-<12
/// hex>`, with `-<32 hex>` after it in partitioned tables (see `tracked::new_commit_id`).
/// `None` for any other name.
pub(crate) fn bowman_commit_millis(dir: &str) -> Option<i64> {
    let mut parts = dir.split('-');
    let millis = parts.next().filter(|m| m.len() == 13 && m.bytes().all(|b| b.is_ascii_digit()))?;
    parts.next().filter(|h| h.len() == 12 && h.bytes().all(|b| b.is_ascii_hexdigit()))?;
    match parts.next() {
        None => {}
        Some(md5) if md5.len() == 32 && md5.bytes().all(|b| b.is_ascii_hexdigit()) => {}
        Some(_) => return None,
    }
    if parts.next().is_some() {
        return None;
    }
    millis.parse().ok()
}

/// The commit directories under a table's location, relative to it as listings spell them
/// (`dt=p1/_commit=...`), `depth` partition directories down. On a local disk the directories
/// themselves are read, so a write killed before its first file was complete (only a staging
/// file, which listings skip) is found too.
async fn commit_dirs(runtime: &RuntimeEnv, location: &str, depth: usize) -> Result<Vec<String>> {
    let url = bowman_connector_files::table_url(location)?;
    if url.scheme() == "file" {
        let root = local_root(&url, location)?;
        return Ok(local_commit_dirs(&root, depth));
    }
    let files = crate::tracked::location_files(runtime, location).await?;
    let mut dirs: Vec<String> = files
        .iter()
        .filter_map(|(rel, _)| {
            let segments: Vec<&str> = rel.split('/').collect();
            // `<partition dirs>/_commit=<id>/<file>`, one directory per partition column.
            (segments.len() == depth + 2).then(|| segments[..=depth].join("/"))
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    Ok(dirs)
}

fn local_commit_dirs(root: &std::path::Path, depth: usize) -> Vec<String> {
    let mut level = vec![(root.to_path_buf(), String::new())];
    for _ in 0..=depth {
        let mut next = Vec::new();
        for (path, rel) in level {
            let Ok(entries) = std::fs::read_dir(&path) else { continue };
            for e in entries.flatten() {
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let name = e.file_name().to_string_lossy().to_string();
                let rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
                next.push((e.path(), rel));
            }
        }
        level = next;
    }
    level.into_iter().map(|(_, rel)| rel).collect()
}

/// Of the commit directories `dirs` of `def` (relative, `dt=p1/_commit=...`), those not live
/// and created before `before_ms`.
pub(crate) fn dead_dirs<'a>(def: &TableDef, dirs: impl IntoIterator<Item = &'a str>, before_ms: i64) -> Vec<String> {
    let live: std::collections::HashSet<(&str, &str)> = def.live.iter().map(|l| (l.partition.as_str(), l.dir.as_str())).collect();
    let mut dead = std::collections::BTreeSet::new();
    for rel in dirs {
        let segments: Vec<&str> = rel.split('/').collect();
        let depth = def.partition_columns.len();
        if segments.len() != depth + 1 {
            continue;
        }
        let Some(dir) = segments[depth].strip_prefix("_commit=") else { continue };
        let partition = segments[..depth].join("/");
        if live.contains(&(partition.as_str(), dir)) {
            continue;
        }
        match bowman_commit_millis(dir) {
            Some(ms) if ms < before_ms => {
                dead.insert(segments[..=depth].join("/"));
            }
            _ => {}
        }
    }
    dead.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bowman_commit_names_count() {
        assert_eq!(bowman_commit_millis("1764590000000-0123456789ab"), Some(1_764_590_000_000));
        assert_eq!(bowman_commit_millis("1764590000000-0123456789ab-0123456789abcdef0123456789abcdef"), Some(1_764_590_000_000));
        for other in ["", "x", "1764590000000", "1764590000000-0123456789ag", "176459000000-0123456789ab", "1764590000000-0123456789ab-x", "../1764590000000-0123456789ab"] {
            assert_eq!(bowman_commit_millis(other), None, "{other}");
        }
    }
}
