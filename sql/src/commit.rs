//! Making a write to a tracked table visible: find the commit directories it wrote, record
//! them in one catalog transaction (retiring what an overwrite replaces), and delete retired
//! directories once readers can no longer need them.

use std::sync::Arc;
use std::time::Duration;

use bowman_catalog::{CatalogChange, LiveDir, Mutation, Replace, TableDef, Transaction};
use datafusion::catalog::TableProvider;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;

use crate::error::{BowmanError, Result};
use crate::session::Session;
use crate::tracked::{Layout, TrackedTable, written_by_commit};

/// What a write replaces when it commits.
#[derive(Debug, Clone)]
pub(crate) enum WriteMode {
    Append,
    /// Replace the partitions the write produced, plus these (a fully static PARTITION spec
    /// replaces its partition even when the query returns no rows).
    OverwritePartitions(Vec<String>),
    /// Replace everything.
    OverwriteAll,
    /// Rewrite the partitions produced from their own rows (OPTIMIZE): fails rather than
    /// commit if another write changed them after they were read.
    Rewrite,
}

/// How long retired directories stay for queries that planned against the old snapshot,
/// unless `SET file_retention` says otherwise.
pub(crate) const DEFAULT_RETENTION_MS: u64 = 60_000;

pub(crate) fn tracked(provider: &Arc<dyn TableProvider>) -> Option<&TrackedTable> {
    let any: &dyn std::any::Any = provider.as_ref();
    any.downcast_ref::<TrackedTable>()
}

pub(crate) fn delta(provider: &Arc<dyn TableProvider>) -> Option<&bowman_connector_delta::DeltaProvider> {
    let any: &dyn std::any::Any = provider.as_ref();
    any.downcast_ref::<bowman_connector_delta::DeltaProvider>()
}

/// The commit directories (or, for external tables, the files) written by `commit`.
pub(crate) async fn written_by(session: &Session, def: &TableDef, layout: Layout, commit: &str) -> Result<Vec<LiveDir>> {
    let location = def.location.as_deref().ok_or_else(|| BowmanError::Internal("tracked table without location".into()))?;
    let files = crate::tracked::location_files(&session.engine.runtime, location).await?;
    Ok(written_by_commit(layout, files.iter().map(|(rel, _)| rel.as_str()), commit))
}

/// Refuse, before anything is written, a write whose mode the table cannot commit: only tables
/// whose files Bowman tracks (or Delta, which keeps its own log) can be overwritten. Tells a
/// tracked table what is coming, so an overwrite lists the files it may replace first.
pub(crate) fn check_write_mode(provider: &Arc<dyn TableProvider>, mode: &WriteMode) -> Result<()> {
    if let Some(t) = tracked(provider) {
        t.set_overwrite(!matches!(mode, WriteMode::Append));
    }
    if tracked(provider).is_some() || delta(provider).is_some() || matches!(mode, WriteMode::Append) {
        return Ok(());
    }
    Err(BowmanError::NotSupported(format!(
        "INSERT OVERWRITE into {}: Bowman can only append to it (a remote database or a single-file location); \
         overwrite file, Delta or catalog tables",
        table_name(provider)
    )))
}

pub(crate) async fn commit_write(session: &Session, provider: &Arc<dyn TableProvider>, mode: WriteMode) -> Result<()> {
    check_write_mode(provider, &mode)?;
    let Some(table) = tracked(provider) else {
        // Appends to untracked tables need no commit; Delta's sink committed itself.
        return Ok(());
    };
    let def = &table.def;
    let pending = table.pending_write().ok_or_else(|| BowmanError::Internal("write without a commit id".into()))?;
    let added = written_by(session, def, table.layout, &pending.commit).await?;
    let mut expect = None;
    let replace = match mode {
        WriteMode::Append => Replace::Nothing,
        WriteMode::OverwriteAll => Replace::All,
        WriteMode::Rewrite => {
            expect = Some(def.live.clone());
            let mut parts: Vec<String> = added.iter().map(|d| d.partition.clone()).collect();
            parts.sort();
            parts.dedup();
            Replace::Partitions(parts)
        }
        WriteMode::OverwritePartitions(extra) => {
            let mut parts: Vec<String> = added.iter().map(|d| d.partition.clone()).chain(extra).collect();
            parts.sort();
            parts.dedup();
            Replace::Partitions(parts)
        }
    };
    // Files other engines wrote into the partitions an overwrite replaces go with it.
    let retire_files: Vec<String> = pending
        .foreign
        .into_iter()
        .filter(|(partition, _)| match &replace {
            Replace::Nothing => false,
            Replace::All => true,
            Replace::Partitions(parts) => parts.contains(partition),
        })
        .map(|(_, path)| path)
        .collect();
    let overwrite = replace != Replace::Nothing;
    let write = Mutation::CommitWrite { database: def.database.clone(), name: def.name.clone(), replace, add: added, expect, retire_files };
    let mut transaction = Transaction::default().with(write);
    if overwrite {
        // An overwrite replaces what it planned against: if another commit changed the table
        // since, it fails with 40001 rather than drop that commit's rows.
        transaction = transaction.expecting(&def.database, &def.name, def.data_version);
    }
    let outcome = session.engine.catalog.commit(transaction).await?;
    schedule_cleanup(session, def, outcome.retired, outcome.retired_files);
    Ok(())
}

fn table_name(provider: &Arc<dyn TableProvider>) -> String {
    tracked(provider).map(|t| t.def.qualified_name()).unwrap_or_else(|| "this table".into())
}

/// Delete what a commit retired once no statement can still read it: after every statement
/// of this server that started before the commit has finished (a reader planned against the
/// old snapshot may still be reading those files), and at most `file_retention` later. With a
/// catalog shared between servers, readers on the other servers are not seen from here, so
/// the full `file_retention` applies.
///
/// Directories of writes that died before committing (a `kill -9`, a crash, a failed
/// statement) are deleted at the next start-up instead: see [`remove_dead_writes`].
fn schedule_cleanup(session: &Session, def: &TableDef, retired: Vec<LiveDir>, retired_files: Vec<String>) {
    let Some(location) = def.location.clone() else { return };
    let retention = session
        .setting("file_retention")
        .and_then(|v| crate::settings::parse_duration_ms(&v))
            .map(|ms| ms.min(crate::settings::MAX_DURATION_MS))
        .unwrap_or(DEFAULT_RETENTION_MS);
    // Retired files an earlier cleanup did not get to (the server stopped first).
    let now = chrono::Utc::now().timestamp_millis();
    let mut files = retired_files;
    for r in &def.retired {
        if now - r.retired_at >= retention as i64 && !files.contains(&r.path) {
            files.push(r.path.clone());
        }
    }
    if retired.is_empty() && files.is_empty() {
        return;
    }
    let engine = session.engine.clone();
    let started_before = engine.statements.next_id();
    let shared_catalog = engine.catalog.is_shared();
    let (database, name) = (def.database.clone(), def.name.clone());
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(retention);
        if shared_catalog {
            tokio::time::sleep_until(deadline).await;
        } else {
            while engine.statements.any_running_before(started_before) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        for d in &retired {
            let relative = if d.partition.is_empty() {
                format!("_commit={}", d.dir)
            } else {
                format!("{}/_commit={}", d.partition, d.dir)
            };
            if let Err(e) = delete_dir(&engine.runtime, &location, &relative).await {
                tracing::warn!(error = %e.message(), "could not delete replaced files");
            }
        }
        if files.is_empty() {
            return;
        }
        let mut deleted = Vec::new();
        for f in files {
            match delete_file(&engine.runtime, &location, &f).await {
                Ok(()) => deleted.push(f),
                Err(e) => tracing::warn!(error = %e.message(), "could not delete a replaced file; it stays hidden"),
            }
        }
        if !deleted.is_empty() {
            let change = CatalogChange::ForgetRetired { database, name, paths: deleted };
            if let Err(e) = engine.catalog.apply(change).await {
                tracing::warn!(error = %e, "could not record deleted files");
            }
        }
    });
}

/// Delete one file of a table (a missing file counts as deleted).
pub(crate) async fn delete_file(runtime: &datafusion::execution::runtime_env::RuntimeEnv, location: &str, relative: &str) -> Result<()> {
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
/// never a way out of the table).
async fn delete_dir(runtime: &datafusion::execution::runtime_env::RuntimeEnv, location: &str, relative: &str) -> Result<()> {
    let segments: Vec<&str> = relative.split('/').collect();
    if segments.iter().any(|s| s.is_empty() || *s == "." || *s == ".." || s.contains('\\')) {
        return Err(BowmanError::Internal(format!("refusing to delete {relative:?} under {location}")));
    }
    let url = bowman_connector_files::table_url(location)?;
    if url.scheme() == "file" {
        let root = url::Url::parse(url.as_str())
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .ok_or_else(|| BowmanError::Internal(format!("{location} is not a local path")))?;
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
    let id = parts.next().filter(|h| h.len() == 12 && h.bytes().all(|b| b.is_ascii_hexdigit()))?;
    let _ = id;
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

/// The commit directories of `def` that hold files but are not live and were created before
/// `before_ms`, as paths relative to the location (`dt=p1/_commit=...`).
pub(crate) fn dead_dirs<'a>(def: &TableDef, files: impl IntoIterator<Item = &'a str>, before_ms: i64) -> Vec<String> {
    let live: std::collections::HashSet<(&str, &str)> =
        def.live.iter().map(|l| (l.partition.as_str(), l.dir.as_str())).collect();
    let mut dead = std::collections::BTreeSet::new();
    for rel in files {
        let segments: Vec<&str> = rel.split('/').collect();
        // `<partition dirs>/_commit=<id>/<file>`, one directory per partition column.
        let depth = def.partition_columns.len();
        if segments.len() != depth + 2 {
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

/// Delete the commit directories of writes that can no longer commit, in every managed table
/// of `snapshot`. Called once at start-up with the catalog as it was before any client could
/// write, and `before_ms` the time then: a directory not live in that snapshot and created
/// before then belongs to a write of an earlier run of the server (a write that died, or a
/// directory an overwrite retired whose clean-up the stop cut short). Commits only ever make
/// new directories live, so none of these is read again, and no reader of an earlier run is
/// left. Only directories named as Bowman names them are touched.
///
/// With a catalog shared between servers nothing is deleted: another server's write in progress
/// looks the same from here.
pub(crate) async fn remove_dead_writes(engine: Arc<crate::Engine>, snapshot: Arc<bowman_catalog::CatalogState>, before_ms: i64) {
    if engine.catalog.is_shared() {
        return;
    }
    for def in snapshot.databases.values().flat_map(|d| d.tables.values()).filter(|t| t.tracked) {
        let Some(location) = def.location.as_deref() else { continue };
        // Opening the table registers its store (an S3 bucket's client).
        if let Err(e) = engine.table_provider(def).await {
            tracing::warn!(table = %def.qualified_name(), error = %e.message(), "cannot open the table to clear dead writes");
            continue;
        }
        let files = match crate::tracked::location_files(&engine.runtime, location).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(table = %def.qualified_name(), error = %e.message(), "cannot list the table to clear dead writes");
                continue;
            }
        };
        let dead = dead_dirs(def, files.iter().map(|(rel, _)| rel.as_str()), before_ms);
        let mut removed = 0;
        for relative in &dead {
            match delete_dir(&engine.runtime, location, relative).await {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!(table = %def.qualified_name(), error = %e.message(), "cannot delete a dead write"),
            }
        }
        if removed > 0 {
            tracing::info!(table = %def.qualified_name(), directories = removed, "deleted the files of writes that never committed");
        }
    }
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
