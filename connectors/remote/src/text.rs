//! Arrow batches from values a database sent as text (MySQL's text protocol): strings are
//! collected per column and cast once per batch with Arrow's casts, which parse numbers,
//! decimals, dates, times and timestamps.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BinaryBuilder, RecordBatch, RecordBatchOptions, StringBuilder};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::util::display::FormatOptions;
use datafusion::error::{DataFusionError, Result};

enum Col {
    Text(StringBuilder),
    Binary(BinaryBuilder),
}

/// Collects text values row by row and turns them into a batch of `schema`.
pub struct TextBatchBuilder {
    schema: SchemaRef,
    cols: Vec<Col>,
    rows: usize,
}

impl TextBatchBuilder {
    pub fn new(schema: SchemaRef) -> Self {
        let cols = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Binary | DataType::LargeBinary => Col::Binary(BinaryBuilder::new()),
                _ => Col::Text(StringBuilder::new()),
            })
            .collect();
        TextBatchBuilder { schema, cols, rows: 0 }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Append one value of the current row (in column order); `None` is NULL.
    pub fn push(&mut self, col: usize, value: Option<&[u8]>) -> Result<()> {
        match (&mut self.cols[col], value) {
            (Col::Binary(b), v) => b.append_option(v),
            (Col::Text(b), None) => b.append_null(),
            (Col::Text(b), Some(v)) => match std::str::from_utf8(v) {
                Ok(s) => b.append_value(s),
                Err(_) => {
                    return Err(DataFusionError::Execution(format!(
                        "column {} holds bytes that are not UTF-8 text; declare it binary in the remote database or cast it in a query option",
                        self.schema.field(col).name()
                    )));
                }
            },
        }
        Ok(())
    }

    /// End the current row.
    pub fn end_row(&mut self) {
        self.rows += 1;
    }

    /// The batch so far (the builder starts over).
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let options = CastOptions { safe: false, format_options: FormatOptions::default() };
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.cols.len());
        for (i, c) in self.cols.iter_mut().enumerate() {
            let field = self.schema.field(i);
            let array: ArrayRef = match c {
                Col::Binary(b) => Arc::new(b.finish()),
                Col::Text(b) => {
                    let text: ArrayRef = Arc::new(b.finish());
                    cast_with_options(&text, field.data_type(), &options).map_err(|e| {
                        DataFusionError::Execution(format!(
                            "cannot read remote column {} as {}: {e}",
                            field.name(),
                            field.data_type()
                        ))
                    })?
                }
            };
            arrays.push(array);
        }
        let rows = std::mem::take(&mut self.rows);
        Ok(RecordBatch::try_new_with_options(self.schema.clone(), arrays, &RecordBatchOptions::new().with_row_count(Some(rows)))?)
    }
}

/// How a database reads values sent to it as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFlavor {
    Postgres,
    MySql,
}

/// Every value of `column` as the text (bytes, for binary columns) a database parses back into
/// the same value; `None` for NULL. Used for INSERT parameters.
pub fn value_texts(column: &ArrayRef, flavor: TextFlavor) -> Result<Vec<Option<Vec<u8>>>> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::TimeUnit;
    use datafusion::arrow::util::display::ArrayFormatter;
    let n = column.len();
    let mut out = Vec::with_capacity(n);
    match column.data_type() {
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            let c = datafusion::arrow::compute::cast(column, &DataType::Binary)?;
            let b = c.as_binary::<i32>();
            for i in 0..n {
                out.push((!b.is_null(i)).then(|| match flavor {
                    TextFlavor::MySql => b.value(i).to_vec(),
                    TextFlavor::Postgres => {
                        let mut s = String::with_capacity(2 + 2 * b.value(i).len());
                        s.push_str("\\x");
                        for byte in b.value(i) {
                            s.push_str(&format!("{byte:02x}"));
                        }
                        s.into_bytes()
                    }
                }));
            }
        }
        DataType::Boolean => {
            let b = column.as_boolean();
            for i in 0..n {
                out.push((!b.is_null(i)).then(|| {
                    let v = b.value(i);
                    match flavor {
                        TextFlavor::Postgres => if v { b"t".to_vec() } else { b"f".to_vec() },
                        TextFlavor::MySql => if v { b"1".to_vec() } else { b"0".to_vec() },
                    }
                }));
            }
        }
        DataType::Timestamp(_, tz) => {
            let c = datafusion::arrow::compute::cast(column, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
            let t = c.as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
            for i in 0..n {
                out.push((!t.is_null(i)).then(|| {
                    let ts = chrono::DateTime::from_timestamp_micros(t.value(i)).unwrap_or_default().naive_utc();
                    let mut s = ts.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
                    if tz.is_some() && flavor == TextFlavor::Postgres {
                        s.push_str("+00");
                    }
                    s.into_bytes()
                }));
            }
        }
        DataType::List(_) | DataType::LargeList(_) => {
            let c = datafusion::arrow::compute::cast(
                column,
                &DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new("item", DataType::Utf8, true))),
            )?;
            let l = c.as_list::<i32>();
            for i in 0..n {
                if l.is_null(i) {
                    out.push(None);
                    continue;
                }
                let items = l.value(i);
                let items = items.as_string::<i32>();
                let parts: Vec<String> = (0..items.len())
                    .map(|j| match (items.is_null(j), flavor) {
                        (true, TextFlavor::Postgres) => "NULL".to_string(),
                        (true, TextFlavor::MySql) => "null".to_string(),
                        (false, _) => {
                            let v = items.value(j).replace('\\', "\\\\").replace('"', "\\\"");
                            format!("\"{v}\"")
                        }
                    })
                    .collect();
                out.push(Some(match flavor {
                    TextFlavor::Postgres => format!("{{{}}}", parts.join(",")).into_bytes(),
                    TextFlavor::MySql => format!("[{}]", parts.join(",")).into_bytes(),
                }));
            }
        }
        _ => {
            let options = FormatOptions::default().with_date_format(Some("%Y-%m-%d")).with_time_format(Some("%H:%M:%S%.6f"));
            let f = ArrayFormatter::try_new(column.as_ref(), &options)?;
            for i in 0..n {
                out.push((!column.is_null(i)).then(|| f.value(i).to_string().into_bytes()));
            }
        }
    }
    Ok(out)
}

/// An INSERT's batch prepared for a database: the quoted column list, every value as text, and
/// the row ranges of one statement each (at most `batch_size` rows and 65535 placeholders, the
/// limit of both PostgreSQL and MySQL).
pub struct InsertRows {
    pub columns_sql: String,
    pub texts: Vec<Vec<Option<Vec<u8>>>>,
    pub chunks: Vec<std::ops::Range<usize>>,
}

impl InsertRows {
    pub fn new(
        batch: &datafusion::arrow::array::RecordBatch,
        flavor: TextFlavor,
        batch_size: usize,
        quote: impl Fn(&str) -> String,
    ) -> Result<Self> {
        let columns: Vec<String> = batch.schema().fields().iter().map(|f| quote(f.name())).collect();
        let texts = batch.columns().iter().map(|c| value_texts(c, flavor)).collect::<Result<Vec<_>>>()?;
        let per_stmt = batch_size.min(65_535 / columns.len().max(1)).max(1);
        let rows = batch.num_rows();
        let chunks = (0..rows).step_by(per_stmt).map(|start| start..(start + per_stmt).min(rows)).collect();
        Ok(InsertRows { columns_sql: columns.join(", "), texts, chunks })
    }
}
