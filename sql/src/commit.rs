//! Making a write to a tracked table visible: find the commit directories it wrote and record
//! them in one catalog transaction, retiring what an overwrite replaces (the sweeper,
//! `crate::sweeper`, deletes those once readers can no longer need them).

use std::sync::Arc;

use bowman_catalog::{CatalogChange, LiveDir, Replace, TableDef};
use datafusion::catalog::TableProvider;

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
    crate::sweeper::check_lease(&pending, def)?;
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
    let outcome = session
        .engine
        .catalog
        .apply(CatalogChange::CommitWrite {
            database: def.database.clone(),
            name: def.name.clone(),
            replace,
            add: added,
            expect,
            retire_files,
        })
        .await?;
    crate::sweeper::after_commit(session, def, outcome.retired, outcome.retired_files);
    Ok(())
}

fn table_name(provider: &Arc<dyn TableProvider>) -> String {
    tracked(provider).map(|t| t.def.qualified_name()).unwrap_or_else(|| "this table".into())
}
