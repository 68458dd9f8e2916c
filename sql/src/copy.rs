//! `COPY (query) TO STDOUT` and `COPY table [(columns)] TO STDOUT`, in PostgreSQL's text and
//! CSV formats, streamed batch by batch.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::sql::sqlparser::ast;

use crate::error::{BowmanError, Result};
use crate::output::Output;
use crate::session::Session;

/// How COPY writes rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFormat {
    pub csv: bool,
    pub header: bool,
    pub delimiter: char,
    pub null: String,
    pub quote: char,
}

impl CopyFormat {
    fn from_options(options: &[ast::CopyOption], legacy: &[ast::CopyLegacyOption]) -> Result<CopyFormat> {
        let mut csv = false;
        let mut header = false;
        let (mut delimiter, mut null, mut quote) = (None, None, '"');
        for o in options {
            match o {
                ast::CopyOption::Format(f) => match f.value.to_ascii_lowercase().as_str() {
                    "csv" => csv = true,
                    "text" => csv = false,
                    other => return Err(BowmanError::NotSupported(format!("COPY format {other}; use text or csv"))),
                },
                ast::CopyOption::Header(h) => header = *h,
                ast::CopyOption::Delimiter(d) => delimiter = Some(*d),
                ast::CopyOption::Null(n) => null = Some(n.clone()),
                ast::CopyOption::Quote(q) => quote = *q,
                ast::CopyOption::Encoding(e) if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
                other => return Err(BowmanError::NotSupported(format!("COPY option {other}"))),
            }
        }
        for o in legacy {
            match o {
                ast::CopyLegacyOption::Csv(more) => {
                    csv = true;
                    for m in more {
                        match m {
                            ast::CopyLegacyCsvOption::Header => header = true,
                            ast::CopyLegacyCsvOption::Quote(q) => quote = *q,
                            other => return Err(BowmanError::NotSupported(format!("COPY option {other}"))),
                        }
                    }
                }
                ast::CopyLegacyOption::Delimiter(d) => delimiter = Some(*d),
                ast::CopyLegacyOption::Null(n) => null = Some(n.clone()),
                ast::CopyLegacyOption::Header => header = true,
                other => return Err(BowmanError::NotSupported(format!("COPY option {other}"))),
            }
        }
        if header && !csv {
            return Err(BowmanError::InvalidValue("COPY HEADER is available only in CSV mode".into()));
        }
        Ok(CopyFormat {
            csv,
            header,
            delimiter: delimiter.unwrap_or(if csv { ',' } else { '\t' }),
            null: null.unwrap_or_else(|| if csv { String::new() } else { "\\N".to_string() }),
            quote,
        })
    }

    /// The header line (CSV with HEADER).
    pub fn header_line(&self, schema: &SchemaRef) -> Option<Vec<u8>> {
        if !self.header {
            return None;
        }
        let names: Vec<String> = schema.fields().iter().map(|f| self.field(f.name())).collect();
        Some(format!("{}\n", names.join(&self.delimiter.to_string())).into_bytes())
    }

    fn field(&self, value: &str) -> String {
        if self.csv {
            let needs_quotes = value.is_empty() && self.null.is_empty()
                || value == self.null
                || value.contains([self.delimiter, self.quote, '\n', '\r']);
            if needs_quotes {
                let q = self.quote.to_string();
                format!("{q}{}{q}", value.replace(&q, &format!("{q}{q}")))
            } else {
                value.to_string()
            }
        } else {
            let mut out = String::with_capacity(value.len());
            for c in value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c == self.delimiter => {
                        out.push('\\');
                        out.push(c);
                    }
                    c => out.push(c),
                }
            }
            out
        }
    }

    /// The rows of a batch, one line each, as PostgreSQL prints them.
    pub fn encode(&self, batch: &RecordBatch) -> Result<Vec<u8>> {
        let options = FormatOptions::default()
            .with_null("")
            .with_date_format(Some("%Y-%m-%d"))
            .with_datetime_format(Some("%Y-%m-%d %H:%M:%S%.f"))
            .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
            .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f%:z"));
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| BowmanError::DataFusion(e.into()))?;
        let mut out = Vec::with_capacity(batch.num_rows() * 16 * batch.num_columns().max(1));
        let delimiter = self.delimiter.to_string();
        for row in 0..batch.num_rows() {
            for (i, (column, formatter)) in batch.columns().iter().zip(&formatters).enumerate() {
                if i > 0 {
                    out.extend_from_slice(delimiter.as_bytes());
                }
                if column.is_null(row) {
                    out.extend_from_slice(self.null.as_bytes());
                    continue;
                }
                let text = match column.data_type() {
                    // PostgreSQL's spelling of booleans.
                    DataType::Boolean => if column.as_boolean().value(row) { "t" } else { "f" }.to_string(),
                    // PostgreSQL prints fractional seconds without trailing zeros.
                    DataType::Timestamp(_, None) | DataType::Time32(_) | DataType::Time64(_) => {
                        let text = formatter.value(row).to_string();
                        match text.rfind('.') {
                            Some(dot) if text[dot + 1..].bytes().all(|b| b.is_ascii_digit()) => {
                                text.trim_end_matches('0').trim_end_matches('.').to_string()
                            }
                            _ => text,
                        }
                    }
                    _ => formatter.value(row).to_string(),
                };
                out.extend_from_slice(self.field(&text).as_bytes());
            }
            out.push(b'\n');
        }
        Ok(out)
    }
}

/// Run `COPY ... TO STDOUT`.
pub(crate) async fn copy_to(session: &Session, stmt: ast::Statement) -> Result<Output> {
    let ast::Statement::Copy { source, to, target, options, legacy_options, .. } = stmt else {
        return Err(BowmanError::Internal("not a COPY".into()));
    };
    if !to {
        return Err(BowmanError::NotSupported(
            "COPY ... FROM STDIN; load rows with INSERT, or with Flight SQL bulk ingest (adbc_ingest)".into(),
        ));
    }
    if !matches!(target, ast::CopyTarget::Stdout) {
        return Err(BowmanError::NotSupported("COPY TO a server file or program; copy TO STDOUT".into()));
    }
    let format = CopyFormat::from_options(&options, &legacy_options)?;
    let query = match source {
        ast::CopySource::Query(q) => q,
        ast::CopySource::Table { table_name, columns } => {
            let cols = if columns.is_empty() { "*".to_string() } else { columns.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ") };
            let sql = format!("SELECT {cols} FROM {table_name}");
            match crate::parser::parse_sql(&sql)?.pop() {
                Some(crate::parser::Statement::Standard(s)) => match *s {
                    ast::Statement::Query(q) => q,
                    _ => return Err(BowmanError::Internal("COPY source did not parse as a query".into())),
                },
                _ => return Err(BowmanError::Internal("COPY source did not parse as a query".into())),
            }
        }
    };
    let plan = session.plan_query(query).await?;
    let df = session.ctx.execute_logical_plan(plan).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let stream = df.execute_stream().await?;
    Ok(Output::CopyOut { format, schema, stream })
}
