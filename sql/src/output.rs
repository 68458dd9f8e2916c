use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

use crate::error::{BowmanError, Result};

/// A message for the client while or after a statement runs (pgwire's NoticeResponse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// `NOTICE` (progress, information) or `WARNING` (something the user should act on).
    pub severity: &'static str,
    /// The SQLSTATE: `00000` for notices, `01000` for warnings.
    pub code: &'static str,
    pub message: String,
}

/// What a statement produced.
pub enum Output {
    /// Rows, streamed: the statement's work happens as the stream is polled.
    Rows { schema: SchemaRef, stream: SendableRecordBatchStream },
    /// A command with its tag (`CREATE TABLE`, `INSERT`, ...) and, where it has one, a row count.
    Command { tag: String, rows: Option<usize> },
    /// A setting changed; front ends that report parameters (pgwire's ParameterStatus) do so.
    Set { name: String, value: String },
    TransactionStart,
    TransactionEnd { tag: String },
    /// `COPY ... TO STDOUT`: rows to encode in `format` as they stream.
    CopyOut { format: crate::copy::CopyFormat, schema: SchemaRef, stream: SendableRecordBatchStream },
    /// `COPY ... FROM STDIN`: the front end collects the client's data and hands it to
    /// [`crate::Session::copy_in`].
    CopyIn(crate::copy::CopyInTarget),
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Rows { schema, .. } => write!(f, "Rows({schema:?})"),
            Output::Command { tag, rows } => write!(f, "Command({tag}, {rows:?})"),
            Output::Set { name, value } => write!(f, "Set({name}={value})"),
            Output::TransactionStart => write!(f, "TransactionStart"),
            Output::TransactionEnd { tag } => write!(f, "TransactionEnd({tag})"),
            Output::CopyOut { format, .. } => write!(f, "CopyOut({format:?})"),
            Output::CopyIn(t) => write!(f, "CopyIn({}.{})", t.database, t.table),
        }
    }
}

impl Output {
    pub fn command(tag: &str) -> Self {
        Output::Command { tag: tag.to_string(), rows: None }
    }

    /// A small, fully known result of text columns (SHOW, DESCRIBE).
    pub fn text_rows(columns: &[&str], rows: Vec<Vec<Option<String>>>) -> Result<Self> {
        let schema = text_schema(columns);
        let arrays: Vec<ArrayRef> = (0..columns.len())
            .map(|i| Arc::new(rows.iter().map(|r| r[i].clone()).collect::<StringArray>()) as ArrayRef)
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(|e| BowmanError::Internal(e.to_string()))?;
        Ok(Output::batch(schema, batch))
    }

    pub fn batch(schema: SchemaRef, batch: RecordBatch) -> Self {
        let stream = RecordBatchStreamAdapter::new(schema.clone(), futures::stream::iter(vec![Ok(batch)]));
        Output::Rows { schema, stream: Box::pin(stream) }
    }
}

pub(crate) fn text_schema(columns: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(columns.iter().map(|c| Field::new(*c, DataType::Utf8, true)).collect::<Vec<_>>()))
}
