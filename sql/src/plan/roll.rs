//! Rolling files within a writer: `max_records_per_file` and `target_file_size`.
//!
//! Without a limit a writer hands all its rows to one call of the table's file sink, which
//! makes one file per directory it writes (DataFusion's hive-style demux keeps one file open
//! per partition value and never rolls). With a limit the writer splits its rows itself: each
//! file is its own call of the sink, fed through a channel and closed (its call ended) when
//! the file is full, so a finished file is flushed at once instead of waiting for the end of
//! the write. Rows keep their order (SORT BY) across the files of a directory.
//!
//! DataFusion's sinks do not say how many bytes a file in progress holds, so a file's size is
//! estimated: the writer encodes its first batch in the table's format and settings and takes
//! the bytes per row from that (Parquet: with the table's compression; CSV/JSON: uncompressed).
//! Larger files compress better than one batch does, so files end up at or somewhat below the
//! target, never far above it.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use bowman_catalog::TableDef;
use datafusion::arrow::array::{RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

use crate::error::BowmanError;
use crate::settings::{BowmanOptions, CountSetting, SizeSetting};
use crate::plan::write::Written;
use crate::tracked::{COMMIT_COLUMN, Layout, WriteSetup};

/// When a writer starts a new file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FileLimits {
    /// At most this many rows per file.
    pub rows: Option<u64>,
    /// About this many bytes per file.
    pub bytes: Option<u64>,
}

/// The table options that set a table's file limits (over the session's settings).
pub(crate) const TARGET_FILE_SIZE: &str = "target_file_size";
pub(crate) const MAX_RECORDS_PER_FILE: &str = "max_records_per_file";

impl FileLimits {
    /// The limits of a write to `def`: the table's options `target_file_size` and
    /// `max_records_per_file` (Spark's `maxRecordsPerFile` too), else the session's settings.
    pub(crate) fn for_table(def: &TableDef, settings: &BowmanOptions) -> crate::error::Result<FileLimits> {
        let (bytes, rows) = table_limits(&def.options)?;
        Ok(FileLimits {
            rows: rows.or(settings.max_records_per_file()).filter(|n| *n > 0),
            bytes: bytes.or(settings.target_file_size()).filter(|n| *n > 0),
        })
    }

    pub(crate) fn is_unlimited(&self) -> bool {
        self.rows.is_none() && self.bytes.is_none()
    }

    /// How EXPLAIN shows the limits (empty without any).
    pub(crate) fn describe(&self) -> String {
        let mut out = String::new();
        if let Some(b) = self.bytes {
            out.push_str(&format!(", target_file_size={}", SizeSetting(b)));
        }
        if let Some(r) = self.rows {
            out.push_str(&format!(", max_records_per_file={r}"));
        }
        out
    }

    /// Rows a file holding `rows` still takes (at least one while it is open).
    fn room(&self, rows: u64, bytes_per_row: Option<f64>) -> u64 {
        let by_rows = self.rows.unwrap_or(u64::MAX);
        let by_bytes = match (self.bytes, bytes_per_row) {
            (Some(b), Some(per_row)) if per_row > 0.0 => ((b as f64 / per_row) as u64).max(1),
            _ => u64::MAX,
        };
        by_rows.min(by_bytes).saturating_sub(rows).max(1)
    }
}

/// A table's own limits, checked (CREATE TABLE calls this too, so a bad value is refused
/// before any write).
pub(crate) fn table_limits(options: &std::collections::BTreeMap<String, String>) -> crate::error::Result<(Option<u64>, Option<u64>)> {
    let option = |names: &[&str]| options.iter().find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n))).map(|(_, v)| v.clone());
    let bytes = match option(&[TARGET_FILE_SIZE]) {
        Some(v) => Some(v.parse::<SizeSetting>().map_err(|e| BowmanError::InvalidValue(format!("table option {TARGET_FILE_SIZE} '{v}': {e}")))?.0),
        None => None,
    };
    let rows = match option(&[MAX_RECORDS_PER_FILE, "maxRecordsPerFile"]) {
        Some(v) => Some(v.parse::<CountSetting>().map_err(|e| BowmanError::InvalidValue(format!("table option {MAX_RECORDS_PER_FILE} '{v}': {e}")))?.0),
        None => None,
    };
    Ok((bytes, rows))
}

/// Write `rows` (batches shaped as the files hold them) through the table's sink, one sink
/// call per file, starting a new file whenever one reaches `limits`. Answers how many files
/// went to each directory (by the keys of the writer's report).
pub(crate) async fn write_rolling(
    setup: Arc<WriteSetup>,
    limits: FileLimits,
    mut rows: SendableRecordBatchStream,
    context: Arc<TaskContext>,
) -> Result<HashMap<String, u64>> {
    let mut files: HashMap<String, u64> = HashMap::new();
    let mut open: HashMap<String, OpenFile> = HashMap::new();
    let mut closed: Vec<SpawnedTask<Result<u64>>> = Vec::new();
    let mut bytes_per_row = None;
    while let Some(batch) = rows.next().await.transpose()? {
        if batch.num_rows() == 0 {
            continue;
        }
        if limits.bytes.is_some() && bytes_per_row.is_none() {
            bytes_per_row = Some(encoded_bytes_per_row(&setup, &batch)?);
        }
        for (key, mut part) in split_by_directory(&setup, &batch)? {
            while part.num_rows() > 0 {
                let file = match open.entry(key.clone()) {
                    std::collections::hash_map::Entry::Occupied(f) => f.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        *files.entry(key.clone()).or_default() += 1;
                        v.insert(OpenFile::start(setup.clone(), context.clone()))
                    }
                };
                let room = limits.room(file.rows, bytes_per_row);
                let n = (room as usize).min(part.num_rows());
                file.send(part.slice(0, n)).await?;
                file.rows += n as u64;
                part = part.slice(n, part.num_rows() - n);
                if n as u64 >= room {
                    if let Some(full) = open.remove(&key) {
                        closed.push(full.close());
                    }
                }
            }
        }
    }
    closed.extend(open.into_values().map(OpenFile::close));
    for task in closed {
        task.join_unwind().await.map_err(|e| DataFusionError::External(Box::new(e)))??;
    }
    Ok(files)
}

/// One file in progress: a call of the sink reading from a channel.
struct OpenFile {
    tx: tokio::sync::mpsc::Sender<Result<RecordBatch>>,
    task: SpawnedTask<Result<u64>>,
    rows: u64,
}

impl OpenFile {
    fn start(setup: Arc<WriteSetup>, context: Arc<TaskContext>) -> OpenFile {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
        let schema = setup.file_schema.clone();
        let batches = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
        let stream: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(schema, batches));
        let task = SpawnedTask::spawn(async move {
            let any: &dyn Any = setup.sink.as_ref();
            let sink = any.downcast_ref::<DataSinkExec>().ok_or_else(|| DataFusionError::Internal("the file writer is not a sink".into()))?;
            sink.sink().write_all(stream, &context).await
        });
        OpenFile { tx, task, rows: 0 }
    }

    async fn send(&mut self, batch: RecordBatch) -> Result<()> {
        if self.tx.send(Ok(batch)).await.is_ok() {
            return Ok(());
        }
        // The sink stopped reading: it failed, and its error says why.
        let (tx, _) = tokio::sync::mpsc::channel(1);
        let OpenFile { task, .. } = std::mem::replace(self, OpenFile { tx, task: SpawnedTask::spawn(async { Ok(0) }), rows: 0 });
        match task.join_unwind().await {
            Ok(Err(e)) => Err(e),
            Ok(Ok(_)) => Err(DataFusionError::Internal("a file writer ended before its rows".into())),
            Err(e) => Err(DataFusionError::External(Box::new(e))),
        }
    }

    /// End the file: its sink call finishes writing it.
    fn close(self) -> SpawnedTask<Result<u64>> {
        drop(self.tx);
        self.task
    }
}

/// The rows of `batch` by the directory they go to (keyed as the writer's report keys them:
/// `_commit` for commit directories, the partition path for external tables), in their order.
fn split_by_directory(setup: &WriteSetup, batch: &RecordBatch) -> Result<Vec<(String, RecordBatch)>> {
    let commit_dirs = match setup.layout {
        Layout::CommitDirs => Some(string_column(batch, COMMIT_COLUMN)?),
        Layout::Listed => None,
    };
    let texts: Vec<&StringArray> = match setup.layout {
        Layout::CommitDirs => Vec::new(),
        Layout::Listed => setup.partition_columns.iter().map(|c| string_column(batch, c)).collect::<Result<_>>()?,
    };
    let key = |row: usize| Written::key(setup, commit_dirs, &texts, row);
    let first = key(0);
    if (1..batch.num_rows()).all(|r| key(r) == first) {
        return Ok(vec![(first, batch.clone())]);
    }
    let mut order: Vec<String> = Vec::new();
    let mut rows: HashMap<String, Vec<u32>> = HashMap::new();
    for r in 0..batch.num_rows() {
        let k = key(r);
        match rows.get_mut(&k) {
            Some(v) => v.push(r as u32),
            None => {
                order.push(k.clone());
                rows.insert(k, vec![r as u32]);
            }
        }
    }
    order
        .into_iter()
        .map(|k| {
            let indices = UInt32Array::from(rows.remove(&k).unwrap_or_default());
            Ok((k, take_record_batch(batch, &indices)?))
        })
        .collect()
}

fn string_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    batch
        .column_by_name(name)
        .and_then(|a| a.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| DataFusionError::Internal(format!("a file batch without its {name} text column")))
}

/// Bytes per row of `batch` encoded as the table's files encode it (the partition columns,
/// which the files do not hold, left out).
fn encoded_bytes_per_row(setup: &WriteSetup, batch: &RecordBatch) -> Result<f64> {
    let schema = batch.schema();
    let mut kept: Vec<usize> = (0..schema.fields().len())
        .filter(|i| {
            let name = schema.field(*i).name();
            name != COMMIT_COLUMN && !setup.partition_columns.contains(name)
        })
        .collect();
    if kept.is_empty() {
        kept = (0..schema.fields().len()).collect();
    }
    let data = batch.project(&kept)?;
    let any: &dyn Any = setup.sink.as_ref();
    let sink = any.downcast_ref::<DataSinkExec>().map(|s| s.sink());
    let mut out = Vec::new();
    if let Some(parquet) = sink.and_then(|s| s.downcast_ref::<datafusion::datasource::file_format::parquet::ParquetSink>()) {
        // The table's settings as its sink applies them; the arrow schema the sink stores in
        // each file's metadata is a few hundred bytes per file, left out of the estimate.
        let mut options = parquet.parquet_options().clone();
        options.global.skip_arrow_metadata = true;
        let props = datafusion::parquet::file::properties::WriterPropertiesBuilder::try_from(&options)?.build();
        let mut writer = datafusion::parquet::arrow::ArrowWriter::try_new(&mut out, data.schema(), Some(props))?;
        writer.write(&data)?;
        writer.close()?;
    } else if sink.is_some_and(|s| s.downcast_ref::<datafusion::datasource::file_format::json::JsonSink>().is_some()) {
        // JSON and CSV: the text itself (before any compression).
        let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut out);
        writer.write(&data)?;
        writer.finish()?;
    } else {
        let mut writer = datafusion::arrow::csv::WriterBuilder::new().with_header(false).build(&mut out);
        writer.write(&data)?;
    }
    Ok(out.len() as f64 / data.num_rows().max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_the_tighter_limit_and_never_zero() {
        let l = FileLimits { rows: Some(100), bytes: Some(1000) };
        assert_eq!(l.room(0, Some(20.0)), 50);
        assert_eq!(l.room(0, Some(5.0)), 100);
        assert_eq!(l.room(40, Some(20.0)), 10);
        assert_eq!(l.room(99, None), 1);
        assert_eq!(l.room(100, None), 1);
        assert_eq!(FileLimits { rows: None, bytes: Some(10) }.room(0, Some(50.0)), 1);
        assert_eq!(FileLimits::default().room(7, None), u64::MAX - 7);
        assert!(FileLimits::default().is_unlimited());
        assert_eq!(l.describe(), ", target_file_size=1000, max_records_per_file=100");
    }
}
