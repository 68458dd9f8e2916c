//! PostgreSQL's binary wire format to Arrow, column by column.
//!
//! Rows arrive in the binary format (tokio-postgres always asks for it); each column gets a
//! decoder chosen from its PostgreSQL type and the Arrow type Bowman expects, and a batch is
//! cast to the expected schema at the end when the two differ (an `int4` sum arrives as
//! `int8`, an average as `numeric`).

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder,
    Int16Builder, Int32Builder, Int64Builder, ListArray, RecordBatch, RecordBatchOptions, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::arrow::util::display::FormatOptions;
use datafusion::error::{DataFusionError, Result};
use tokio_postgres::types::{FromSql, Kind, Type};

/// Any value, as the raw bytes of its binary format.
pub struct Raw<'a>(pub &'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Days and microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The Arrow type a PostgreSQL column reads as, or `None` when Bowman cannot read it yet.
/// `typmod` carries numeric precision and scale (-1 when unknown).
pub fn arrow_type(ty: &Type, typmod: i32) -> Option<DataType> {
    if let Kind::Domain(inner) = ty.kind() {
        return arrow_type(inner, typmod);
    }
    if let Kind::Enum(_) = ty.kind() {
        return Some(DataType::Utf8);
    }
    if let Kind::Array(elem) = ty.kind() {
        let inner = arrow_type(elem, typmod)?;
        if matches!(inner, DataType::List(_)) {
            return None;
        }
        return Some(DataType::List(Arc::new(Field::new("element", inner, true))));
    }
    Some(match *ty {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 | Type::OID => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::NUMERIC => {
            if typmod >= 4 {
                let p = (((typmod - 4) >> 16) & 0xffff) as u8;
                let s = ((typmod - 4) & 0xffff) as i8;
                if p <= 38 { DataType::Decimal128(p, s) } else { DataType::Decimal128(38, s.min(10)) }
            } else {
                // Unconstrained numeric: Spark's choice.
                DataType::Decimal128(38, 18)
            }
        }
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::CHAR | Type::UNKNOWN => DataType::Utf8,
        Type::JSON | Type::JSONB | Type::UUID | Type::XML => DataType::Utf8,
        Type::BYTEA => DataType::Binary,
        Type::DATE => DataType::Date32,
        Type::TIMESTAMP => DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None),
        Type::TIMESTAMPTZ => {
            DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, Some(Arc::from("UTC")))
        }
        Type::TIME => DataType::Time64(datafusion::arrow::datatypes::TimeUnit::Microsecond),
        // Extension types whose binary form is their text (citext and the like).
        _ if ty.name() == "citext" => DataType::Utf8,
        _ => return None,
    })
}

fn bad(column: &str, what: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("cannot read remote column {column}: {what}"))
}

fn be<const N: usize>(raw: &[u8], column: &str) -> Result<[u8; N]> {
    raw.try_into().map_err(|_| bad(column, format!("expected {N} bytes, got {}", raw.len())))
}

/// How one column is read.
enum Dec {
    Bool(BooleanBuilder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    Oid(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    /// numeric into a decimal of this scale
    Numeric(Decimal128Builder, i8),
    /// numeric into a float
    NumericF64(Float64Builder),
    Text(StringBuilder),
    Jsonb(StringBuilder),
    Uuid(StringBuilder),
    Bytes(BinaryBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
    Time(Time64MicrosecondBuilder),
    List { elem: Box<Dec>, offsets: Vec<i32>, valid: Vec<bool> },
}

impl Dec {
    fn for_type(ty: &Type, target: &DataType) -> Option<Dec> {
        if let Kind::Domain(inner) = ty.kind() {
            return Dec::for_type(inner, target);
        }
        if let Kind::Enum(_) = ty.kind() {
            return Some(Dec::Text(StringBuilder::new()));
        }
        if let Kind::Array(elem) = ty.kind() {
            let elem_target = match target {
                DataType::List(f) | DataType::LargeList(f) => f.data_type().clone(),
                other => other.clone(),
            };
            return Some(Dec::List { elem: Box::new(Dec::for_type(elem, &elem_target)?), offsets: vec![0], valid: vec![] });
        }
        Some(match *ty {
            Type::BOOL => Dec::Bool(BooleanBuilder::new()),
            Type::INT2 => Dec::I16(Int16Builder::new()),
            Type::INT4 => Dec::I32(Int32Builder::new()),
            Type::INT8 => Dec::I64(Int64Builder::new()),
            Type::OID => Dec::Oid(Int64Builder::new()),
            Type::FLOAT4 => Dec::F32(Float32Builder::new()),
            Type::FLOAT8 => Dec::F64(Float64Builder::new()),
            Type::NUMERIC => match target {
                DataType::Decimal128(p, s) => Dec::Numeric(Decimal128Builder::new().with_precision_and_scale(*p, *s).ok()?, *s),
                DataType::Float32 | DataType::Float64 => Dec::NumericF64(Float64Builder::new()),
                _ => Dec::Numeric(Decimal128Builder::new().with_precision_and_scale(38, 0).ok()?, 0),
            },
            Type::JSONB => Dec::Jsonb(StringBuilder::new()),
            Type::UUID => Dec::Uuid(StringBuilder::new()),
            Type::BYTEA => Dec::Bytes(BinaryBuilder::new()),
            Type::DATE => Dec::Date(Date32Builder::new()),
            Type::TIMESTAMP => Dec::Ts(TimestampMicrosecondBuilder::new()),
            Type::TIMESTAMPTZ => Dec::Ts(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
            Type::TIME => Dec::Time(Time64MicrosecondBuilder::new()),
            _ if arrow_type(ty, -1) == Some(DataType::Utf8) => Dec::Text(StringBuilder::new()),
            _ => return None,
        })
    }

    fn push(&mut self, raw: Option<&[u8]>, column: &str) -> Result<()> {
        let Some(raw) = raw else {
            self.push_null();
            return Ok(());
        };
        match self {
            Dec::Bool(b) => b.append_value(raw.first().copied().unwrap_or(0) != 0),
            Dec::I16(b) => b.append_value(i16::from_be_bytes(be(raw, column)?)),
            Dec::I32(b) => b.append_value(i32::from_be_bytes(be(raw, column)?)),
            Dec::I64(b) => b.append_value(i64::from_be_bytes(be(raw, column)?)),
            Dec::Oid(b) => b.append_value(u32::from_be_bytes(be(raw, column)?) as i64),
            Dec::F32(b) => b.append_value(f32::from_be_bytes(be(raw, column)?)),
            Dec::F64(b) => b.append_value(f64::from_be_bytes(be(raw, column)?)),
            Dec::Numeric(b, scale) => b.append_value(numeric_scaled(raw, *scale, column)?),
            Dec::NumericF64(b) => b.append_value(numeric_f64(raw, column)?),
            Dec::Text(b) => b.append_value(std::str::from_utf8(raw).map_err(|e| bad(column, e))?),
            Dec::Jsonb(b) => {
                let body = raw.split_first().filter(|(v, _)| **v == 1).map(|(_, b)| b).ok_or_else(|| bad(column, "unknown jsonb version"))?;
                b.append_value(std::str::from_utf8(body).map_err(|e| bad(column, e))?)
            }
            Dec::Uuid(b) => {
                let u: [u8; 16] = be(raw, column)?;
                let h: String = u.iter().map(|x| format!("{x:02x}")).collect();
                b.append_value(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
            }
            Dec::Bytes(b) => b.append_value(raw),
            Dec::Date(b) => {
                let d = i32::from_be_bytes(be(raw, column)?);
                if d == i32::MAX || d == i32::MIN {
                    return Err(bad(column, "the date is infinity, which Bowman cannot represent"));
                }
                b.append_value(d + PG_EPOCH_DAYS)
            }
            Dec::Ts(b) => {
                let t = i64::from_be_bytes(be(raw, column)?);
                if t == i64::MAX || t == i64::MIN {
                    return Err(bad(column, "the timestamp is infinity, which Bowman cannot represent"));
                }
                b.append_value(t + PG_EPOCH_MICROS)
            }
            Dec::Time(b) => b.append_value(i64::from_be_bytes(be(raw, column)?)),
            Dec::List { elem, offsets, valid } => {
                let n = read_array(raw, column, |v| elem.push(v, column))?;
                let last = *offsets.last().expect("starts with 0");
                offsets.push(last + n as i32);
                valid.push(true);
            }
        }
        Ok(())
    }

    fn push_null(&mut self) {
        match self {
            Dec::Bool(b) => b.append_null(),
            Dec::I16(b) => b.append_null(),
            Dec::I32(b) => b.append_null(),
            Dec::I64(b) | Dec::Oid(b) => b.append_null(),
            Dec::F32(b) => b.append_null(),
            Dec::F64(b) | Dec::NumericF64(b) => b.append_null(),
            Dec::Numeric(b, _) => b.append_null(),
            Dec::Text(b) | Dec::Jsonb(b) | Dec::Uuid(b) => b.append_null(),
            Dec::Bytes(b) => b.append_null(),
            Dec::Date(b) => b.append_null(),
            Dec::Ts(b) => b.append_null(),
            Dec::Time(b) => b.append_null(),
            Dec::List { offsets, valid, .. } => {
                let last = *offsets.last().expect("starts with 0");
                offsets.push(last);
                valid.push(false);
            }
        }
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        Ok(match self {
            Dec::Bool(b) => Arc::new(b.finish()),
            Dec::I16(b) => Arc::new(b.finish()),
            Dec::I32(b) => Arc::new(b.finish()),
            Dec::I64(b) | Dec::Oid(b) => Arc::new(b.finish()),
            Dec::F32(b) => Arc::new(b.finish()),
            Dec::F64(b) | Dec::NumericF64(b) => Arc::new(b.finish()),
            Dec::Numeric(b, _) => Arc::new(b.finish()),
            Dec::Text(b) | Dec::Jsonb(b) | Dec::Uuid(b) => Arc::new(b.finish()),
            Dec::Bytes(b) => Arc::new(b.finish()),
            Dec::Date(b) => Arc::new(b.finish()),
            Dec::Ts(b) => Arc::new(b.finish()),
            Dec::Time(b) => Arc::new(b.finish()),
            Dec::List { elem, offsets, valid } => {
                let values = elem.finish()?;
                let field = Arc::new(Field::new("element", values.data_type().clone(), true));
                let offs = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                let nulls = NullBuffer::from(std::mem::take(valid));
                Arc::new(ListArray::try_new(field, offs, values, Some(nulls))?)
            }
        })
    }
}

/// Walk a one-dimensional binary array, handing each element to `f`; returns the count.
fn read_array(raw: &[u8], column: &str, mut f: impl FnMut(Option<&[u8]>) -> Result<()>) -> Result<usize> {
    let int = |at: usize| -> Result<i32> {
        raw.get(at..at + 4).map(|b| i32::from_be_bytes(b.try_into().expect("4 bytes"))).ok_or_else(|| bad(column, "truncated array"))
    };
    let ndim = int(0)?;
    if ndim == 0 {
        return Ok(0);
    }
    if ndim != 1 {
        return Err(bad(column, format!("{ndim}-dimensional arrays are not supported; only one dimension")));
    }
    let len = int(12)? as usize;
    let mut at = 20;
    for _ in 0..len {
        let n = int(at)?;
        at += 4;
        if n < 0 {
            f(None)?;
        } else {
            let v = raw.get(at..at + n as usize).ok_or_else(|| bad(column, "truncated array"))?;
            f(Some(v))?;
            at += n as usize;
        }
    }
    Ok(len)
}

struct NumericParts<'a> {
    weight: i16,
    negative: bool,
    digits: &'a [u8],
}

fn numeric_parts<'a>(raw: &'a [u8], column: &str) -> Result<NumericParts<'a>> {
    if raw.len() < 8 {
        return Err(bad(column, "truncated numeric"));
    }
    let ndigits = u16::from_be_bytes([raw[0], raw[1]]) as usize;
    let weight = i16::from_be_bytes([raw[2], raw[3]]);
    let sign = u16::from_be_bytes([raw[4], raw[5]]);
    let negative = match sign {
        0x0000 => false,
        0x4000 => true,
        0xC000 => return Err(bad(column, "NaN does not fit a DECIMAL column")),
        _ => return Err(bad(column, "infinity does not fit a DECIMAL column")),
    };
    let digits = raw.get(8..8 + 2 * ndigits).ok_or_else(|| bad(column, "truncated numeric"))?;
    Ok(NumericParts { weight, negative, digits })
}

/// A numeric as an integer count of 10^-scale (truncating extra fraction digits).
fn numeric_scaled(raw: &[u8], scale: i8, column: &str) -> Result<i128> {
    let p = numeric_parts(raw, column)?;
    let overflow = || bad(column, format!("the value does not fit DECIMAL(38,{scale})"));
    let mut acc: i128 = 0;
    let n = p.digits.len() / 2;
    for i in 0..n {
        let d = u16::from_be_bytes([p.digits[2 * i], p.digits[2 * i + 1]]) as i128;
        acc = acc.checked_mul(10_000).and_then(|a| a.checked_add(d)).ok_or_else(overflow)?;
    }
    // acc = value * 10^exp
    let exp: i32 = 4 * (n as i32 - 1 - p.weight as i32);
    let shift = scale as i32 - exp;
    if shift >= 0 {
        acc = acc.checked_mul(10i128.checked_pow(shift as u32).ok_or_else(overflow)?).ok_or_else(overflow)?;
    } else {
        acc = match 10i128.checked_pow((-shift) as u32) {
            Some(div) => acc / div,
            None => 0,
        };
    }
    Ok(if p.negative { -acc } else { acc })
}

fn numeric_f64(raw: &[u8], column: &str) -> Result<f64> {
    if raw.len() >= 6 && u16::from_be_bytes([raw[4], raw[5]]) == 0xC000 {
        return Ok(f64::NAN);
    }
    let p = numeric_parts(raw, column)?;
    let mut v = 0f64;
    for i in 0..p.digits.len() / 2 {
        let d = u16::from_be_bytes([p.digits[2 * i], p.digits[2 * i + 1]]) as f64;
        v += d * 10_000f64.powi(p.weight as i32 - i as i32);
    }
    Ok(if p.negative { -v } else { v })
}

/// Builds batches of `schema` from rows whose columns have the given PostgreSQL types.
pub struct BatchDecoder {
    schema: SchemaRef,
    decs: Vec<Dec>,
    rows: usize,
}

impl BatchDecoder {
    pub fn new(schema: SchemaRef, types: &[Type]) -> Result<Self> {
        if types.len() != schema.fields().len() {
            return Err(DataFusionError::Execution(format!(
                "the remote query returned {} columns where {} were expected",
                types.len(),
                schema.fields().len()
            )));
        }
        let decs = types
            .iter()
            .zip(schema.fields())
            .map(|(t, f)| {
                Dec::for_type(t, f.data_type()).ok_or_else(|| {
                    DataFusionError::Execution(format!(
                        "column {} has the PostgreSQL type {}, which Bowman cannot read yet; cast it in a query option (query 'SELECT {}::text ...')",
                        f.name(),
                        t.name(),
                        f.name()
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(BatchDecoder { schema, decs, rows: 0 })
    }

    pub fn push_row(&mut self, row: &tokio_postgres::Row) -> Result<()> {
        for (i, d) in self.decs.iter_mut().enumerate() {
            let raw: Option<Raw> = row.try_get(i).map_err(|e| bad(self.schema.field(i).name(), e))?;
            d.push(raw.map(|r| r.0), self.schema.field(i).name())?;
        }
        self.rows += 1;
        Ok(())
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn finish(&mut self) -> Result<RecordBatch> {
        let options = CastOptions { safe: false, format_options: FormatOptions::default() };
        let mut arrays = Vec::with_capacity(self.decs.len());
        for (d, f) in self.decs.iter_mut().zip(self.schema.fields()) {
            let a = d.finish()?;
            let a = if a.data_type() == f.data_type() {
                a
            } else {
                cast_with_options(&a, f.data_type(), &options)
                    .map_err(|e| bad(f.name(), format!("{} does not convert to {}: {e}", a.data_type(), f.data_type())))?
            };
            arrays.push(a);
        }
        let rows = std::mem::take(&mut self.rows);
        Ok(RecordBatch::try_new_with_options(self.schema.clone(), arrays, &RecordBatchOptions::new().with_row_count(Some(rows)))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(weight: i16, negative: bool, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend((digits.len() as u16).to_be_bytes());
        v.extend(weight.to_be_bytes());
        v.extend((if negative { 0x4000u16 } else { 0 }).to_be_bytes());
        v.extend(dscale.to_be_bytes());
        for d in digits {
            v.extend(d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics_decode_exactly() {
        // 12345.678 = [1, 2345, 6780] weight 1
        let raw = numeric(1, false, 3, &[1, 2345, 6780]);
        assert_eq!(numeric_scaled(&raw, 3, "c").unwrap(), 12_345_678);
        assert_eq!(numeric_scaled(&raw, 5, "c").unwrap(), 1_234_567_800);
        assert_eq!(numeric_scaled(&raw, 0, "c").unwrap(), 12_345);
        assert!((numeric_f64(&raw, "c").unwrap() - 12345.678).abs() < 1e-9);
        // -0.0042 = [42] weight -1
        let raw = numeric(-1, true, 4, &[42]);
        assert_eq!(numeric_scaled(&raw, 4, "c").unwrap(), -42);
        // 10^40 does not fit
        let raw = numeric(10, false, 0, &[1]);
        assert!(numeric_scaled(&raw, 0, "c").is_err());
        // zero
        assert_eq!(numeric_scaled(&numeric(0, false, 0, &[]), 2, "c").unwrap(), 0);
    }
}
