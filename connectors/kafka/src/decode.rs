//! Messages to Arrow: the table's layout (declared value columns plus metadata columns) and the
//! batch decoder.
//!
//! JSON values are decoded many messages at a time with one arrow-json decoder; only a batch
//! in which something does not decode is decoded again message by message, to find which
//! messages are bad and say why in `_error`.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryBuilder, Int32Array, Int64Array, ListBuilder, RecordBatch, RecordBatchOptions, StringArray,
    StringBuilder, StructBuilder, TimestampMicrosecondArray, new_null_array,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use bowman_connector::{ConnectorError, ErrorKind};
use datafusion::error::Result;

use crate::options::{KeyFormat, ValueFormat};

/// The metadata columns every kafka table has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meta {
    Partition,
    Offset,
    Timestamp,
    Key,
    Headers,
    Error,
}

pub const META_NAMES: [(&str, Meta); 6] = [
    ("_partition", Meta::Partition),
    ("_offset", Meta::Offset),
    ("_timestamp", Meta::Timestamp),
    ("_key", Meta::Key),
    ("_headers", Meta::Headers),
    ("_error", Meta::Error),
];

pub fn headers_type() -> DataType {
    DataType::List(Arc::new(Field::new("element", DataType::Struct(header_fields()), true)))
}

fn header_fields() -> Fields {
    Fields::from(vec![Field::new("key", DataType::Utf8, true), Field::new("value", DataType::Binary, true)])
}

pub fn meta_type(m: Meta, key: KeyFormat) -> DataType {
    match m {
        Meta::Partition => DataType::Int32,
        Meta::Offset => DataType::Int64,
        Meta::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
        Meta::Key if key == KeyFormat::Binary => DataType::Binary,
        Meta::Key => DataType::Utf8,
        Meta::Headers => headers_type(),
        Meta::Error => DataType::Utf8,
    }
}

fn meta_sql(m: Meta, key: KeyFormat) -> &'static str {
    match m {
        Meta::Partition => "INT",
        Meta::Offset => "BIGINT",
        Meta::Timestamp => "TIMESTAMP_LTZ",
        Meta::Key if key == KeyFormat::Binary => "BINARY",
        Meta::Key => "STRING",
        Meta::Headers => "ARRAY<STRUCT<key: STRING, value: BINARY>>",
        Meta::Error => "STRING",
    }
}

/// Whether two types are the same for a stored column (struct nullability aside).
fn same_type(a: &DataType, b: &DataType) -> bool {
    match (a, b) {
        (DataType::List(x), DataType::List(y)) => same_type(x.data_type(), y.data_type()),
        (DataType::Struct(x), DataType::Struct(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(x, y)| x.name() == y.name() && same_type(x.data_type(), y.data_type()))
        }
        _ => a == b,
    }
}

/// Which table column is what.
#[derive(Debug, Clone)]
pub struct Layout {
    pub schema: SchemaRef,
    /// Per table column: a metadata column, or a value column (`None`).
    pub meta: Vec<Option<Meta>>,
    pub value_format: ValueFormat,
    pub key_format: KeyFormat,
}

impl Layout {
    /// The table's columns from the declared ones: a declared column named like a metadata
    /// column *is* that column and must have its type; missing metadata columns are appended.
    pub fn new(declared: &Schema, value_format: ValueFormat, key_format: KeyFormat, table: &str) -> Result<Layout, ConnectorError> {
        let mut fields = Vec::new();
        let mut meta = Vec::new();
        let mut seen = Vec::new();
        for f in declared.fields() {
            if let Some((_, m)) = META_NAMES.iter().find(|(n, _)| *n == f.name().as_str()) {
                let want = meta_type(*m, key_format);
                if !same_type(f.data_type(), &want) {
                    return Err(ConnectorError::new(
                        ErrorKind::InvalidOption,
                        format!(
                            "column {} of kafka table {table} is a metadata column of type {}; declare it with that type or leave it out (it is added anyway)",
                            f.name(),
                            meta_sql(*m, key_format)
                        ),
                    ));
                }
                seen.push(*m);
                fields.push(Field::new(f.name(), want, true));
                meta.push(Some(*m));
            } else {
                fields.push(Field::new(f.name(), f.data_type().clone(), true));
                meta.push(None);
            }
        }
        let values = meta.iter().filter(|m| m.is_none()).count();
        match value_format {
            ValueFormat::Raw => {
                if values == 0 {
                    fields.insert(0, Field::new("value", DataType::Utf8, true));
                    meta.insert(0, None);
                } else if values > 1 {
                    return Err(ConnectorError::new(
                        ErrorKind::InvalidOption,
                        format!("kafka table {table} has value_format 'raw', which fills one column (STRING or BINARY); {values} value columns are declared"),
                    ));
                }
                let (i, _) = meta.iter().enumerate().find(|(_, m)| m.is_none()).expect("one value column");
                if !matches!(fields[i].data_type(), DataType::Utf8 | DataType::Binary) {
                    return Err(ConnectorError::new(
                        ErrorKind::InvalidOption,
                        format!("column {} of kafka table {table} holds the raw value: declare it STRING or BINARY", fields[i].name()),
                    ));
                }
            }
            ValueFormat::Json | ValueFormat::Csv if values == 0 => {
                return Err(ConnectorError::new(
                    ErrorKind::InvalidOption,
                    format!(
                        "kafka table {table}: declare the columns to decode from each message, e.g. CREATE TABLE t (user_id BIGINT, action STRING) USING kafka ..., or use value_format 'raw'"
                    ),
                ));
            }
            _ => {}
        }
        for (name, m) in META_NAMES {
            if !seen.contains(&m) {
                fields.push(Field::new(name, meta_type(m, key_format), true));
                meta.push(Some(m));
            }
        }
        Ok(Layout { schema: Arc::new(Schema::new(fields)), meta, value_format, key_format })
    }

    pub fn index_of(&self, m: Meta) -> usize {
        self.meta.iter().position(|x| *x == Some(m)).expect("every metadata column is present")
    }

    /// The value columns (table index, field).
    pub fn value_fields(&self) -> Vec<(usize, &Field)> {
        self.meta.iter().enumerate().filter(|(_, m)| m.is_none()).map(|(i, _)| (i, self.schema.field(i))).collect()
    }
}

/// A batch of fetched messages, copied out of librdkafka's buffers.
#[derive(Default)]
pub struct Messages {
    pub partition: Vec<i32>,
    pub offset: Vec<i64>,
    pub timestamp_ms: Vec<Option<i64>>,
    pub keys: Vec<u8>,
    pub key_ends: Vec<Option<usize>>,
    pub values: Vec<u8>,
    pub value_ends: Vec<Option<usize>>,
    /// Only when `_headers` is read.
    pub headers: Vec<Vec<(String, Option<Vec<u8>>)>>,
}

impl Messages {
    pub fn len(&self) -> usize {
        self.offset.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offset.is_empty()
    }

    fn slice<'a>(data: &'a [u8], ends: &[Option<usize>], i: usize) -> Option<&'a [u8]> {
        let end = ends[i]?;
        let start = ends[..i].iter().rev().find_map(|e| *e).unwrap_or(0);
        Some(&data[start..end])
    }

    pub fn value(&self, i: usize) -> Option<&[u8]> {
        Self::slice(&self.values, &self.value_ends, i)
    }

    pub fn key(&self, i: usize) -> Option<&[u8]> {
        Self::slice(&self.keys, &self.key_ends, i)
    }

    /// Start offsets of each value in `values` (a prefix walk; `value()` per row is quadratic
    /// when many values are null).
    fn value_spans(&self) -> Vec<Option<(usize, usize)>> {
        Self::spans(&self.value_ends)
    }

    fn key_spans(&self) -> Vec<Option<(usize, usize)>> {
        Self::spans(&self.key_ends)
    }

    /// (start, end) of each present entry, from the running ends of the entries.
    fn spans(ends: &[Option<usize>]) -> Vec<Option<(usize, usize)>> {
        let mut start = 0;
        ends.iter()
            .map(|e| {
                e.map(|end| {
                    let s = (start, end);
                    start = end;
                    s
                })
            })
            .collect()
    }

    pub fn clear(&mut self) {
        self.partition.clear();
        self.offset.clear();
        self.timestamp_ms.clear();
        self.keys.clear();
        self.key_ends.clear();
        self.values.clear();
        self.value_ends.clear();
        self.headers.clear();
    }
}

/// Turns [`Messages`] into batches of the scan's projected columns.
pub struct BatchDecoder {
    layout: Arc<Layout>,
    /// Table indices of the output columns.
    projection: Vec<usize>,
    out_schema: SchemaRef,
    /// The value columns decoded (all of them when `_error` is read or `strict`, else the
    /// projected ones).
    decode_fields: Vec<usize>,
    decode_schema: SchemaRef,
    strict: bool,
    pub table: String,
}

impl BatchDecoder {
    pub fn new(layout: Arc<Layout>, projection: Vec<usize>, strict: bool, table: String) -> BatchDecoder {
        let out_schema = Arc::new(Schema::new(projection.iter().map(|i| layout.schema.field(*i).clone()).collect::<Vec<_>>()));
        let wants_error = projection.iter().any(|i| layout.meta[*i] == Some(Meta::Error));
        let decode_fields: Vec<usize> = layout
            .value_fields()
            .into_iter()
            .map(|(i, _)| i)
            .filter(|i| wants_error || strict || projection.contains(i) || layout.value_format == ValueFormat::Csv)
            .collect();
        let decode_schema =
            Arc::new(Schema::new(decode_fields.iter().map(|i| layout.schema.field(*i).clone()).collect::<Vec<_>>()));
        BatchDecoder { layout, projection, out_schema, decode_fields, decode_schema, strict, table }
    }

    pub fn schema(&self) -> SchemaRef {
        self.out_schema.clone()
    }

    pub fn needs_headers(&self) -> bool {
        self.projection.iter().any(|i| self.layout.meta[*i] == Some(Meta::Headers))
    }

    pub fn needs_values(&self) -> bool {
        !self.decode_fields.is_empty()
    }

    pub fn needs_keys(&self) -> bool {
        self.strict || self.projection.iter().any(|i| matches!(self.layout.meta[*i], Some(Meta::Key) | Some(Meta::Error)))
    }

    pub fn decode(&self, m: &Messages) -> Result<RecordBatch> {
        let n = m.len();
        let mut errors: Vec<Option<String>> = vec![None; n];
        let values = if self.decode_fields.is_empty() {
            None
        } else {
            Some(self.decode_values(m, &mut errors)?)
        };
        // keys
        let needs_key = self.needs_keys();
        let key_array: Option<ArrayRef> = if needs_key {
            let spans = m.key_spans();
            Some(match self.layout.key_format {
                KeyFormat::Binary => {
                    let mut b = BinaryBuilder::with_capacity(n, m.keys.len());
                    for s in &spans {
                        match s {
                            Some((a, z)) => b.append_value(&m.keys[*a..*z]),
                            None => b.append_null(),
                        }
                    }
                    Arc::new(b.finish())
                }
                KeyFormat::String | KeyFormat::Json => {
                    let mut b = StringBuilder::with_capacity(n, m.keys.len());
                    for (i, s) in spans.iter().enumerate() {
                        match s {
                            Some((a, z)) => match std::str::from_utf8(&m.keys[*a..*z]) {
                                Ok(k) => {
                                    if self.layout.key_format == KeyFormat::Json {
                                        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(k) {
                                            add_error(&mut errors[i], format!("key is not JSON: {e}"));
                                        }
                                    }
                                    b.append_value(k)
                                }
                                Err(e) => {
                                    add_error(&mut errors[i], format!("key is not UTF-8: {e}"));
                                    b.append_null()
                                }
                            },
                            None => b.append_null(),
                        }
                    }
                    Arc::new(b.finish())
                }
            })
        } else {
            None
        };
        if self.strict {
            if let Some((i, e)) = errors.iter().enumerate().find_map(|(i, e)| e.as_ref().map(|e| (i, e))) {
                return Err(ConnectorError::new(
                    ErrorKind::Corrupt,
                    format!(
                        "kafka table {}: the message at partition {} offset {} does not decode ({e}); the table is strict, drop strict 'true' to read such messages as NULL columns with the reason in _error",
                        self.table, m.partition[i], m.offset[i]
                    ),
                )
                .into());
            }
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.projection.len());
        for &ti in &self.projection {
            let col: ArrayRef = match self.layout.meta[ti] {
                Some(Meta::Partition) => Arc::new(Int32Array::from(m.partition.clone())),
                Some(Meta::Offset) => Arc::new(Int64Array::from(m.offset.clone())),
                Some(Meta::Timestamp) => Arc::new(
                    TimestampMicrosecondArray::from(m.timestamp_ms.iter().map(|t| t.map(|t| t.saturating_mul(1000))).collect::<Vec<_>>())
                        .with_timezone("UTC"),
                ),
                Some(Meta::Key) => key_array.clone().expect("keys decoded"),
                Some(Meta::Headers) => headers_array(m),
                Some(Meta::Error) => Arc::new(StringArray::from(errors.clone())),
                None => {
                    let pos = self.decode_fields.iter().position(|x| *x == ti).expect("projected value column is decoded");
                    values.as_ref().expect("values decoded")[pos].clone()
                }
            };
            columns.push(col);
        }
        Ok(RecordBatch::try_new_with_options(self.out_schema.clone(), columns, &RecordBatchOptions::new().with_row_count(Some(n)))?)
    }

    /// The decoded value columns (in `decode_fields` order), recording failures in `errors`.
    fn decode_values(&self, m: &Messages, errors: &mut [Option<String>]) -> Result<Vec<ArrayRef>> {
        let spans = m.value_spans();
        match self.layout.value_format {
            ValueFormat::Raw => {
                let dt = self.decode_schema.field(0).data_type();
                let arr: ArrayRef = if *dt == DataType::Binary {
                    let mut b = BinaryBuilder::with_capacity(m.len(), m.values.len());
                    for s in &spans {
                        match s {
                            Some((a, z)) => b.append_value(&m.values[*a..*z]),
                            None => b.append_null(),
                        }
                    }
                    Arc::new(b.finish())
                } else {
                    let mut b = StringBuilder::with_capacity(m.len(), m.values.len());
                    for (i, s) in spans.iter().enumerate() {
                        match s.map(|(a, z)| std::str::from_utf8(&m.values[a..z])) {
                            Some(Ok(v)) => b.append_value(v),
                            Some(Err(e)) => {
                                add_error(&mut errors[i], format!("value is not UTF-8: {e}"));
                                b.append_null()
                            }
                            None => b.append_null(),
                        }
                    }
                    Arc::new(b.finish())
                };
                Ok(vec![arr])
            }
            ValueFormat::Json => {
                if let Some(cols) = self.json_batch(m, &spans) {
                    return Ok(cols);
                }
                self.per_message(m, &spans, errors, |v| self.json_one(v))
            }
            ValueFormat::Csv => {
                if let Some(cols) = self.csv_batch(m, &spans) {
                    return Ok(cols);
                }
                self.per_message(m, &spans, errors, |v| self.csv_one(v))
            }
        }
    }

    fn json_decoder(&self, rows: usize) -> arrow::json::reader::Decoder {
        arrow::json::ReaderBuilder::new(self.decode_schema.clone())
            .with_batch_size(rows.max(1))
            .with_coerce_primitive(true)
            .build_decoder()
            .expect("a JSON decoder for the table's columns")
    }

    /// All messages through one decoder; `None` when any message is bad (or a tombstone).
    fn json_batch(&self, m: &Messages, spans: &[Option<(usize, usize)>]) -> Option<Vec<ArrayRef>> {
        let mut dec = self.json_decoder(m.len());
        for (i, s) in spans.iter().enumerate() {
            let (a, z) = (*s)?;
            let v = &m.values[a..z];
            match dec.decode(v) {
                Ok(used) if used == v.len() => {}
                _ => return None,
            }
            // A newline ends a bare number, so one message can never run into the next.
            if dec.decode(b"\n").is_err() || dec.has_partial_record() || dec.len() != i + 1 {
                return None;
            }
        }
        let batch = dec.flush().ok()??;
        (batch.num_rows() == m.len()).then(|| batch.columns().to_vec())
    }

    fn json_one(&self, v: &[u8]) -> std::result::Result<RecordBatch, String> {
        let mut dec = self.json_decoder(2);
        let used = dec.decode(v).map_err(|e| clean(&e.to_string()))?;
        if used != v.len() {
            return Err("more than one JSON value in the message".into());
        }
        dec.decode(b"\n").map_err(|e| clean(&e.to_string()))?;
        if dec.has_partial_record() {
            return Err("the JSON value is incomplete".into());
        }
        match dec.len() {
            0 => return Err("the message is empty, not a JSON object".into()),
            1 => {}
            _ => return Err("more than one JSON value in the message".into()),
        }
        match dec.flush() {
            Ok(Some(b)) if b.num_rows() == 1 => Ok(b),
            Ok(_) => Err("no JSON object in the message".into()),
            Err(e) => Err(clean(&e.to_string())),
        }
    }

    fn csv_decoder(&self, rows: usize) -> arrow::csv::reader::Decoder {
        arrow::csv::ReaderBuilder::new(self.decode_schema.clone())
            .with_header(false)
            .with_batch_size(rows.max(1))
            .build_decoder()
    }

    fn csv_batch(&self, m: &Messages, spans: &[Option<(usize, usize)>]) -> Option<Vec<ArrayRef>> {
        let mut buf = Vec::with_capacity(m.values.len() + m.len());
        for s in spans {
            let (a, z) = (*s)?;
            let v = &m.values[a..z];
            if v.is_empty() || v.iter().any(|b| *b == b'\n' || *b == b'\r') {
                return None;
            }
            buf.extend_from_slice(v);
            buf.push(b'\n');
        }
        let mut dec = self.csv_decoder(m.len());
        let mut rest = &buf[..];
        while !rest.is_empty() {
            let used = dec.decode(rest).ok()?;
            if used == 0 {
                return None;
            }
            rest = &rest[used..];
        }
        let batch = dec.flush().ok()??;
        (batch.num_rows() == m.len()).then(|| batch.columns().to_vec())
    }

    fn csv_one(&self, v: &[u8]) -> std::result::Result<RecordBatch, String> {
        let mut dec = self.csv_decoder(2);
        let mut buf = v.to_vec();
        buf.push(b'\n');
        let mut rest = &buf[..];
        while !rest.is_empty() {
            let used = dec.decode(rest).map_err(|e| clean(&e.to_string()))?;
            if used == 0 {
                break;
            }
            rest = &rest[used..];
        }
        match dec.flush() {
            Ok(Some(b)) if b.num_rows() == 1 => Ok(b),
            Ok(Some(b)) if b.num_rows() > 1 => Err("more than one CSV record in the message".into()),
            Ok(_) => Err("the message is empty, not a CSV record".into()),
            Err(e) => Err(clean(&e.to_string())),
        }
    }

    /// Decode message by message: good ones as they are, bad ones as NULL columns with the
    /// reason in `errors`.
    fn per_message(
        &self,
        m: &Messages,
        spans: &[Option<(usize, usize)>],
        errors: &mut [Option<String>],
        one: impl Fn(&[u8]) -> std::result::Result<RecordBatch, String>,
    ) -> Result<Vec<ArrayRef>> {
        let null_row = RecordBatch::try_new(
            self.decode_schema.clone(),
            self.decode_schema.fields().iter().map(|f| new_null_array(f.data_type(), 1)).collect(),
        )?;
        let mut rows = Vec::with_capacity(m.len());
        for (i, s) in spans.iter().enumerate() {
            match s {
                None => rows.push(null_row.clone()),
                Some((a, z)) => match one(&m.values[*a..*z]) {
                    Ok(b) => rows.push(b),
                    Err(e) => {
                        add_error(&mut errors[i], format!("value is not {}: {e}", format_name(self.layout.value_format)));
                        rows.push(null_row.clone());
                    }
                },
            }
        }
        let batch = arrow::compute::concat_batches(&self.decode_schema, &rows)?;
        Ok(batch.columns().to_vec())
    }
}

fn format_name(f: ValueFormat) -> &'static str {
    match f {
        ValueFormat::Json => "JSON",
        ValueFormat::Csv => "CSV",
        ValueFormat::Raw => "raw",
    }
}

fn add_error(slot: &mut Option<String>, e: String) {
    match slot {
        Some(s) => {
            s.push_str("; ");
            s.push_str(&e);
        }
        None => *slot = Some(e),
    }
}

/// Arrow's parser messages without the `Json error: ` style prefixes.
fn clean(e: &str) -> String {
    let e = e.strip_prefix("Json error: ").or_else(|| e.strip_prefix("Parser error: ")).unwrap_or(e);
    let e = e.strip_prefix("Csv error: ").unwrap_or(e);
    e.chars().take(300).collect()
}

fn headers_array(m: &Messages) -> ArrayRef {
    let mut b = ListBuilder::new(StructBuilder::from_fields(header_fields(), m.len())).with_field(Arc::new(Field::new(
        "element",
        DataType::Struct(header_fields()),
        true,
    )));
    for hs in &m.headers {
        let sb = b.values();
        for (k, v) in hs {
            sb.field_builder::<StringBuilder>(0).expect("key").append_value(k);
            match v {
                Some(v) => sb.field_builder::<BinaryBuilder>(1).expect("value").append_value(v),
                None => sb.field_builder::<BinaryBuilder>(1).expect("value").append_null(),
            }
            sb.append(true);
        }
        b.append(true);
    }
    // Headers were not collected (not projected): empty lists.
    for _ in m.headers.len()..m.len() {
        b.append(true);
    }
    let a = b.finish();
    debug_assert_eq!(a.len(), m.len());
    Arc::new(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;

    fn layout() -> Arc<Layout> {
        let declared = Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]);
        Arc::new(Layout::new(&declared, ValueFormat::Json, KeyFormat::String, "t").unwrap())
    }

    fn msgs(values: &[Option<&str>]) -> Messages {
        let mut m = Messages::default();
        for (i, v) in values.iter().enumerate() {
            m.partition.push(0);
            m.offset.push(i as i64);
            m.timestamp_ms.push(Some(1000));
            m.key_ends.push(None);
            if let Some(v) = v {
                m.values.extend_from_slice(v.as_bytes());
                m.value_ends.push(Some(m.values.len()));
            } else {
                m.value_ends.push(None);
            }
        }
        m
    }

    #[test]
    fn json_batches_and_bad_messages() {
        let l = layout();
        let all: Vec<usize> = (0..l.schema.fields().len()).collect();
        let d = BatchDecoder::new(l.clone(), all.clone(), false, "t".into());
        let b = d.decode(&msgs(&[Some(r#"{"id":1,"name":"a"}"#), Some(r#"{"id":2}"#)])).unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.column(0).as_primitive::<Int64Type>().value(1), 2);
        assert!(b.column(l.index_of(Meta::Error)).is_null(0));

        for bad in ["not json", "5", "{\"id\":", "{\"id\":\"x\"}", "", "{}{}", "[1]"] {
            let b = d.decode(&msgs(&[Some(r#"{"id":1}"#), Some(bad), Some(r#"{"id":3}"#)])).unwrap();
            assert_eq!(b.num_rows(), 3, "{bad}");
            let ids = b.column(0).as_primitive::<Int64Type>();
            assert_eq!((ids.value(0), ids.is_null(1), ids.value(2)), (1, true, 3), "{bad}");
            let err = b.column(l.index_of(Meta::Error)).as_string::<i32>();
            assert!(err.is_null(0) && !err.is_null(1) && err.is_null(2), "{bad}: {:?}", err);
        }
        let strict = BatchDecoder::new(l.clone(), vec![0], true, "t".into());
        assert!(strict.decode(&msgs(&[Some("nope")])).is_err());
        // Without _error and strict, only projected columns are decoded.
        let just_id = BatchDecoder::new(l, vec![0], false, "t".into());
        assert_eq!(just_id.decode(&msgs(&[Some(r#"{"id":7,"name":5}"#)])).unwrap().num_rows(), 1);
    }

    #[test]
    fn metadata_columns_declared_or_added() {
        let declared = Schema::new(vec![Field::new("_offset", DataType::Int64, true), Field::new("v", DataType::Utf8, true)]);
        let l = Layout::new(&declared, ValueFormat::Json, KeyFormat::String, "t").unwrap();
        assert_eq!(l.schema.field(0).name(), "_offset");
        assert_eq!(l.schema.fields().len(), 7);
        let again = Layout::new(&l.schema, ValueFormat::Json, KeyFormat::String, "t").unwrap();
        assert_eq!(again.schema, l.schema);
        let wrong = Schema::new(vec![Field::new("_offset", DataType::Utf8, true), Field::new("v", DataType::Utf8, true)]);
        assert!(Layout::new(&wrong, ValueFormat::Json, KeyFormat::String, "t").is_err());
        assert!(Layout::new(&Schema::empty(), ValueFormat::Json, KeyFormat::String, "t").is_err());
        let raw = Layout::new(&Schema::empty(), ValueFormat::Raw, KeyFormat::String, "t").unwrap();
        assert_eq!(raw.schema.field(0).name(), "value");
    }

    #[test]
    fn csv_values() {
        let declared = Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]);
        let l = Arc::new(Layout::new(&declared, ValueFormat::Csv, KeyFormat::String, "t").unwrap());
        let d = BatchDecoder::new(l.clone(), vec![0, 1, l.index_of(Meta::Error)], false, "t".into());
        let b = d.decode(&msgs(&[Some("1,a"), Some("x,b"), Some("3,\"c,d\"")])).unwrap();
        let ids = b.column(0).as_primitive::<Int64Type>();
        assert_eq!((ids.value(0), ids.is_null(1), ids.value(2)), (1, true, 3));
        assert_eq!(b.column(1).as_string::<i32>().value(2), "c,d");
        assert!(!b.column(2).is_null(1));
    }
}
