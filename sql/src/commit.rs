//! Making a write to a tracked table visible: find the commit directories it wrote and record
//! them in one catalog transaction, retiring what an overwrite replaces (the sweeper,
//! `crate::sweeper`, deletes those once readers can no longer need them).

use std::sync::Arc;

use bowman_catalog::{LiveDir, Mutation, Replace, TableDef, Transaction};
use datafusion::catalog::TableProvider;

use crate::error::{BowmanError, Result};
use crate::session::Session;
use crate::tracked::{Layout, TrackedTable, WriteSetup, written_by_commit};

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
    Err(BowmanError::NotSupported(format!("INSERT OVERWRITE into {}", table_name(provider)))
        .with_detail("Bowman can only append to it: a remote database or a single-file location keeps no list of files to replace.")
        .with_hint("Overwrite file, Delta or catalog tables; replace rows of a remote table in its own database."))
}

/// How a write to a tracked table commits, decided when it is planned: what it replaces,
/// and how long replaced files stay for readers.
#[derive(Debug)]
pub(crate) struct Commit {
    pub table: String,
    pub partition_columns: Vec<String>,
    pub mode: WriteMode,
    def: TableDef,
    engine: Arc<crate::Engine>,
    retention_ms: u64,
}

impl Commit {
    /// The commit of a write of `session` to `provider`, a tracked table.
    pub(crate) fn new(session: &Session, provider: &Arc<dyn TableProvider>, mode: WriteMode) -> Result<Self> {
        let table = tracked(provider).ok_or_else(|| BowmanError::Internal(format!("{} is not tracked", table_name(provider))))?;
        Ok(Commit {
            table: table.def.qualified_name(),
            partition_columns: table.def.partition_columns.clone(),
            mode,
            def: table.def.clone(),
            engine: session.engine.clone(),
            retention_ms: crate::sweeper::session_file_retention_ms(session),
        })
    }

    /// External tables: the files this write made in `partitions` (paths relative to the
    /// location), found by the commit tag in their names. Parquet's sink says which files it
    /// wrote; other formats' sinks do not, so only the partition directories written are listed.
    pub(crate) async fn files_written(&self, setup: &WriteSetup, partitions: &[String]) -> Result<Vec<LiveDir>> {
        let location = self.def.location.as_deref().ok_or_else(|| BowmanError::Internal("tracked table without location".into()))?;
        let url = bowman_connector_files::table_url(location)?;
        let prefix = url.prefix().as_ref().trim_end_matches('/').to_string();
        let relative = |full: &str| full.strip_prefix(prefix.as_str()).unwrap_or(full).trim_start_matches('/').to_string();
        let any: &dyn std::any::Any = setup.sink.as_ref();
        let sink = any.downcast_ref::<datafusion::datasource::sink::DataSinkExec>().map(|s| s.sink());
        if let Some(parquet) = sink.and_then(|s| s.downcast_ref::<datafusion::datasource::file_format::parquet::ParquetSink>()) {
            let paths: Vec<String> = parquet.written().keys().map(|p| relative(p.as_ref())).collect();
            return Ok(written_by_commit(Layout::Listed, paths.iter().map(String::as_str), &setup.commit));
        }
        let store = self.engine.runtime.object_store(&url)?;
        let mut paths = Vec::new();
        for partition in partitions {
            let dir = if partition.is_empty() { prefix.clone() } else { format!("{prefix}/{partition}") };
            let dir = object_store::path::Path::parse(dir.trim_start_matches('/'))
                .map_err(|e| BowmanError::Io(format!("cannot list {location}/{partition}: {e}")))?;
            let listed = store
                .list_with_delimiter(Some(&dir))
                .await
                .map_err(|e| BowmanError::Io(format!("cannot list {location}/{partition}: {e}")))?;
            paths.extend(listed.objects.into_iter().map(|m| relative(m.location.as_ref())));
        }
        Ok(written_by_commit(Layout::Listed, paths.iter().map(String::as_str), &setup.commit))
    }

    /// Register the write in the catalog before it makes files (commit directories; a dead
    /// write's files are found by the sweeper otherwise).
    pub(crate) async fn register(&self, setup: &WriteSetup) -> Result<Option<Arc<crate::sweeper::WriteIntentGuard>>> {
        if setup.layout != Layout::CommitDirs {
            return Ok(None);
        }
        Ok(Some(Arc::new(crate::sweeper::register_write(&self.engine, &self.def, &setup.commit).await?)))
    }

    /// Make `added` (what the writers wrote) live in one catalog transaction, retiring what
    /// the write replaces.
    pub(crate) async fn apply(&self, setup: &WriteSetup, added: Vec<LiveDir>) -> Result<()> {
        if let Some(intent) = &setup.intent {
            intent.check_lease(&self.table)?;
        }
        let pending = crate::tracked::PendingWrite { commit: setup.commit.clone(), foreign: setup.foreign.clone(), intent: None };
        apply_commit(&self.engine, &self.def, pending, self.mode.clone(), added, self.retention_ms).await
    }
}

/// Record a write in the catalog: `added` become live, and what `mode` replaces is retired.
async fn apply_commit(
    engine: &Arc<crate::Engine>,
    def: &TableDef,
    pending: crate::tracked::PendingWrite,
    mode: WriteMode,
    added: Vec<LiveDir>,
    retention_ms: u64,
) -> Result<()> {
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
    let outcome = engine.catalog.commit(transaction).await;
    crate::metrics::record_commit_result(&outcome);
    let outcome = outcome?;
    crate::sweeper::after_commit(engine, retention_ms, def, outcome.retired, outcome.retired_files);
    Ok(())
}

fn table_name(provider: &Arc<dyn TableProvider>) -> String {
    tracked(provider).map(|t| t.def.qualified_name()).unwrap_or_else(|| "this table".into())
}
