//! `COPY (query) TO STDOUT` and `COPY table [(columns)] TO STDOUT`, in PostgreSQL's text, CSV
//! and binary formats, streamed batch by batch. Text and CSV are encoded here; binary uses the
//! per-type binary encodings of result rows, so the front end that has them writes it.

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
    /// PostgreSQL's binary COPY format (`FORMAT binary`, `WITH BINARY`): a signature and header,
    /// then each row as a field count and length-prefixed binary values, then a trailer.
    pub binary: bool,
    pub csv: bool,
    pub header: bool,
    pub delimiter: char,
    pub null: String,
    pub quote: char,
}

impl CopyFormat {
    fn from_options(options: &[ast::CopyOption], legacy: &[ast::CopyLegacyOption]) -> Result<CopyFormat> {
        let mut csv = false;
        let mut binary = false;
        let mut header = false;
        let (mut delimiter, mut null, mut quote) = (None, None, '"');
        for o in options {
            match o {
                ast::CopyOption::Format(f) => match f.value.to_ascii_lowercase().as_str() {
                    "csv" => (csv, binary) = (true, false),
                    "text" => (csv, binary) = (false, false),
                    "binary" => (csv, binary) = (false, true),
                    other => return Err(BowmanError::InvalidValue(format!("COPY format \"{other}\" not recognized; use text, csv or binary"))),
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
                ast::CopyLegacyOption::Binary => binary = true,
                ast::CopyLegacyOption::Delimiter(d) => delimiter = Some(*d),
                ast::CopyLegacyOption::Null(n) => null = Some(n.clone()),
                ast::CopyLegacyOption::Header => header = true,
                other => return Err(BowmanError::NotSupported(format!("COPY option {other}"))),
            }
        }
        if binary {
            // PostgreSQL refuses the text options in binary mode (42601).
            for (given, name) in [(delimiter.is_some(), "DELIMITER"), (null.is_some(), "NULL"), (header, "HEADER")] {
                if given {
                    return Err(BowmanError::Syntax(format!("cannot specify {name} in BINARY mode")));
                }
            }
        }
        if header && !csv {
            return Err(BowmanError::InvalidValue("COPY HEADER is available only in CSV mode".into()));
        }
        Ok(CopyFormat {
            binary,
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
        return copy_from(session, ast::Statement::Copy { source, to, target, options, legacy_options, values: vec![] });
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
    let stream = crate::exec::dataframe_stream(df).await?;
    Ok(Output::CopyOut { format, schema, stream })
}

/// Where `COPY ... FROM STDIN` puts rows, decided when the statement runs; the rows arrive
/// afterwards as COPY data messages.
#[derive(Debug, Clone)]
pub struct CopyInTarget {
    pub database: String,
    pub table: String,
    /// The columns in the data, in order (all of the table's unless the statement lists some).
    pub columns: Vec<String>,
    pub format: CopyFormat,
}

/// Check `COPY t [(cols)] FROM STDIN` and describe what the client must send.
pub(crate) fn copy_from(session: &Session, stmt: ast::Statement) -> Result<Output> {
    let ast::Statement::Copy { source, target, options, legacy_options, .. } = stmt else {
        return Err(BowmanError::Internal("not a COPY".into()));
    };
    if !matches!(target, ast::CopyTarget::Stdin) {
        return Err(BowmanError::NotSupported("COPY FROM a server file or program; copy FROM STDIN".into()));
    }
    let ast::CopySource::Table { table_name, columns } = source else {
        return Err(BowmanError::Syntax("COPY FROM needs a table".into()));
    };
    let name = crate::parser::table_name_from(&table_name).map_err(|e| BowmanError::Syntax(e.to_string()))?;
    let database = name.database.clone().unwrap_or_else(|| session.current_database());
    let snapshot = session.engine.catalog.snapshot();
    let def = snapshot
        .table(&database, &name.name)
        .ok_or_else(|| bowman_catalog::CatalogError::TableNotFound(database.clone(), name.name.clone()))?;
    // Refused before the client sends any data.
    session.require_table(&database, &def.name, "INSERT")?;
    let wanted: Vec<String> = if columns.is_empty() {
        def.columns.iter().map(|c| c.name.clone()).collect()
    } else {
        columns.iter().map(crate::parser::ident_value).collect()
    };
    if let Some(w) = wanted.iter().find(|w| !def.columns.iter().any(|c| &c.name == *w)) {
        return Err(BowmanError::UndefinedColumn(format!("{w} is not a column of {}", def.qualified_name())));
    }
    let format = CopyFormat::from_options(&options, &legacy_options)?;
    if format.binary {
        return Err(BowmanError::NotSupported("COPY FROM STDIN in binary format; send text or csv".into()));
    }
    Ok(Output::CopyIn(CopyInTarget { database, table: def.name.clone(), columns: wanted, format }))
}

/// Turns PostgreSQL text-format COPY lines into CSV for Arrow's decoder: `\N` becomes an empty
/// (NULL) field, backslash escapes are decoded, every other field is quoted.
#[derive(Default)]
struct TextToCsv {
    partial: Vec<u8>,
}

impl TextToCsv {
    fn convert_line(line: &[u8], delimiter: u8, out: &mut Vec<u8>) {
        let mut fields: Vec<Option<Vec<u8>>> = Vec::new();
        let mut field = Vec::new();
        let mut raw = Vec::new();
        let mut i = 0;
        let finish = |field: &mut Vec<u8>, raw: &mut Vec<u8>, fields: &mut Vec<Option<Vec<u8>>>| {
            if raw.as_slice() == b"\\N" {
                fields.push(None);
            } else {
                fields.push(Some(std::mem::take(field)));
            }
            field.clear();
            raw.clear();
        };
        while i < line.len() {
            let b = line[i];
            if b == b'\\' && i + 1 < line.len() {
                raw.extend_from_slice(&line[i..i + 2]);
                field.push(match line[i + 1] {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 8,
                    b'f' => 12,
                    b'v' => 11,
                    other => other,
                });
                i += 2;
                continue;
            }
            if b == delimiter {
                finish(&mut field, &mut raw, &mut fields);
            } else {
                field.push(b);
                raw.push(b);
            }
            i += 1;
        }
        finish(&mut field, &mut raw, &mut fields);
        for (n, f) in fields.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            if let Some(f) = f {
                out.push(b'"');
                for &b in f {
                    if b == b'"' {
                        out.push(b'"');
                    }
                    out.push(b);
                }
                out.push(b'"');
            }
        }
        out.push(b'\n');
    }

    fn push(&mut self, data: &[u8], delimiter: u8) -> Vec<u8> {
        self.partial.extend_from_slice(data);
        let mut out = Vec::with_capacity(self.partial.len() + 16);
        let mut start = 0;
        while let Some(pos) = self.partial[start..].iter().position(|&b| b == b'\n') {
            let line = &self.partial[start..start + pos];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            // `\.` ends the data in old clients' text format.
            if line != b"\\." {
                Self::convert_line(line, delimiter, &mut out);
            }
            start += pos + 1;
        }
        self.partial.drain(..start);
        out
    }

    fn finish(&mut self, delimiter: u8) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.partial.is_empty() && self.partial.as_slice() != b"\\." {
            let line = std::mem::take(&mut self.partial);
            Self::convert_line(&line, delimiter, &mut out);
        }
        out
    }
}

impl Session {
    /// Load the rows of a `COPY ... FROM STDIN` as they arrive, with the commit INSERT makes.
    /// (The statement's registry entry is [`Session::copy_in`]'s.)
    pub(crate) async fn copy_in_rows(
        &mut self,
        target: CopyInTarget,
        data: impl futures::Stream<Item = Vec<u8>> + Send + 'static,
    ) -> Result<usize> {
        use futures::StreamExt;
        // Every field is read as text and cast to the column's type by the load, with the same
        // casts as INSERT (which read PostgreSQL's `t`/`f`, timestamps with a space, ...).
        let schema: SchemaRef = Arc::new(datafusion::arrow::datatypes::Schema::new(
            target.columns.iter().map(|n| datafusion::arrow::datatypes::Field::new(n, DataType::Utf8, true)).collect::<Vec<_>>(),
        ));
        let format = target.format.clone();
        let delimiter = u8::try_from(format.delimiter).map_err(|_| BowmanError::InvalidValue("COPY DELIMITER must be one byte".into()))?;
        let builder = datafusion::arrow::csv::ReaderBuilder::new(schema.clone()).with_batch_size(8192);
        let builder = if format.csv {
            builder.with_delimiter(delimiter).with_header(format.header).with_quote(u8::try_from(format.quote).unwrap_or(b'"'))
        } else {
            builder.with_delimiter(b',').with_header(false)
        };
        let decoder = builder.build_decoder();
        let state = (data.boxed(), decoder, TextToCsv::default(), Vec::<u8>::new(), false);
        let batches = futures::stream::unfold(state, move |(mut data, mut decoder, mut text, mut buf, mut ended)| {
            let format = format.clone();
            async move {
                loop {
                    // Decode what is buffered; a full batch is ready when the decoder stops early.
                    if !buf.is_empty() {
                        match decoder.decode(&buf) {
                            Ok(used) => {
                                buf.drain(..used);
                            }
                            Err(e) => return Some((Err(e.into()), (data, decoder, text, buf, true))),
                        }
                    }
                    if !buf.is_empty() || (ended && decoder.capacity() == 0) {
                        match decoder.flush() {
                            Ok(Some(b)) => return Some((Ok(b), (data, decoder, text, buf, ended))),
                            Ok(None) if ended && buf.is_empty() => return None,
                            Ok(None) => {}
                            Err(e) => return Some((Err(e.into()), (data, decoder, text, buf, true))),
                        }
                    }
                    if ended {
                        return match decoder.flush() {
                            Ok(Some(b)) => Some((Ok(b), (data, decoder, text, buf, true))),
                            Ok(None) => None,
                            Err(e) => Some((Err(e.into()), (data, decoder, text, buf, true))),
                        };
                    }
                    match data.next().await {
                        Some(chunk) if format.csv => buf.extend_from_slice(&chunk),
                        Some(chunk) => buf.extend_from_slice(&text.push(&chunk, delimiter)),
                        None => {
                            if !format.csv {
                                buf.extend_from_slice(&text.finish(delimiter));
                            }
                            ended = true;
                        }
                    }
                }
            }
        });
        let stream = Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, batches));
        let rows = self.ingest_rows(Some(&target.database), &target.table, crate::ingest::IngestMode::Append, stream).await?;
        self.transaction.wrote("COPY");
        Ok(rows)
    }
}
