//! Making a write to a tracked table visible: find the commit directories it wrote and record
//! them in one catalog transaction, retiring what an overwrite replaces (the sweeper,
//! `crate::sweeper`, deletes those once readers can no longer need them).

use std::sync::Arc;

use bowman_catalog::{LiveDir, Mutation, Replace as Retire, TableDef, Transaction};
use datafusion::catalog::TableProvider;

use crate::error::{BowmanError, Result};
use crate::session::Session;
use crate::tracked::{Layout, TrackedTable, WriteSetup, written_by_commit};

/// What a write replaces: the one description tracked and Delta tables share.
pub(crate) use bowman_connector::Replace as WriteMode;

pub(crate) fn tracked(provider: &Arc<dyn TableProvider>) -> Option<&TrackedTable> {
    let any: &dyn std::any::Any = provider.as_ref();
    any.downcast_ref::<TrackedTable>()
}

/// Refuse, before anything is written, a write whose mode the table cannot commit: only tables
/// whose files Bowman tracks (or, checked before this, that keep their own log) can be
/// overwritten.
pub(crate) fn check_write_mode(provider: &Arc<dyn TableProvider>, mode: &WriteMode) -> Result<()> {
    if tracked(provider).is_some() || !mode.replaces() {
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
    /// CREATE TABLE ... AS SELECT: the commit creates the table (`if_not_exists` as given),
    /// holding what the writers wrote, in one catalog change.
    creates: Option<bool>,
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
            creates: None,
        })
    }

    /// The commit of a CREATE TABLE ... AS SELECT into `provider` (opened over the new
    /// table's definition): the table and its first files land in one catalog change.
    pub(crate) fn creating(mut self, if_not_exists: bool) -> Self {
        self.creates = Some(if_not_exists);
        self
    }

    /// Whether this commit creates its table.
    pub(crate) fn creates(&self) -> bool {
        self.creates.is_some()
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
        if let Some(if_not_exists) = self.creates {
            let mut def = self.def.clone();
            def.live = added;
            let outcome = self.engine.catalog.apply(bowman_catalog::CatalogChange::CreateTable { def, if_not_exists }).await;
            crate::metrics::record_commit_result(&outcome);
            outcome?;
            return Ok(());
        }
        apply_commit(&self.engine, &self.def, &setup.foreign, self.mode.clone(), added, self.retention_ms).await
    }
}

/// Record a write in the catalog: `added` become live, and what `mode` replaces is retired,
/// with the files of other engines (`foreign`, see [`WriteSetup::foreign`]) in those partitions.
async fn apply_commit(
    engine: &Arc<crate::Engine>,
    def: &TableDef,
    foreign: &[(String, String)],
    mode: WriteMode,
    added: Vec<LiveDir>,
    retention_ms: u64,
) -> Result<()> {
    let mut expect = None;
    let produced = || added.iter().map(|d| d.partition.clone());
    // What the write replaces, as the catalog retires it: partition directories by path.
    let replace = match mode {
        WriteMode::Nothing => Retire::Nothing,
        WriteMode::All => Retire::All,
        WriteMode::Rewrite => {
            expect = Some(def.live.clone());
            Retire::Partitions(sorted(produced().collect()))
        }
        WriteMode::Produced { exact } => Retire::Partitions(sorted(produced().chain(exact.map(|p| partition_path(def, &p))).collect())),
        WriteMode::Matching(values) => {
            // Every live partition whose values include the static ones.
            let wanted: Vec<String> = values.iter().map(|(n, v)| format!("{n}={}", hive_escape(v))).collect();
            let matching = def.live.iter().map(|l| l.partition.clone()).filter(|p| wanted.iter().all(|w| p.split('/').any(|seg| seg == w)));
            Retire::Partitions(sorted(matching.collect()))
        }
    };
    // Files other engines wrote into the partitions an overwrite replaces go with it.
    let retire_files: Vec<String> = foreign
        .iter()
        .filter(|(partition, _)| match &replace {
            Retire::Nothing => false,
            Retire::All => true,
            Retire::Partitions(parts) => parts.contains(partition),
        })
        .map(|(_, path)| path.clone())
        .collect();
    let overwrite = replace != Retire::Nothing;
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

fn sorted(mut parts: Vec<String>) -> Vec<String> {
    parts.sort();
    parts.dedup();
    parts
}

/// The directory path of a partition given by all its values (`dt=2018-03-05/kind=a`), in the
/// table's partition order.
fn partition_path(def: &TableDef, values: &[(String, String)]) -> String {
    def.partition_columns
        .iter()
        .map(|p| {
            let v = values.iter().find(|(n, _)| n == p).map(|(_, v)| v.as_str()).unwrap_or_default();
            format!("{p}={}", hive_escape(v))
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A partition value as it appears in a directory name (`dt=2018-03-05`): the same encoding
/// the file writer gives it (object_store's, which like Hive's escapes `/` as `%2F`).
pub(crate) fn hive_escape(v: &str) -> String {
    object_store::path::PathPart::from(v.to_string()).as_ref().to_string()
}

fn table_name(provider: &Arc<dyn TableProvider>) -> String {
    tracked(provider).map(|t| t.def.qualified_name()).unwrap_or_else(|| "this table".into())
}
