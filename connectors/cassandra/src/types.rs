//! CQL types ↔ Arrow: the schema mapping, a page decoder that writes serialized CQL values
//! straight into Arrow builders, and the value conversion INSERT uses.

use std::net::IpAddr;
use std::sync::Arc;

use bowman_connector::{ConnectorError, ErrorKind};
use datafusion::arrow::array::*;
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, IntervalMonthDayNano, TimeUnit, i256};
use datafusion::common::ScalarValue;
use scylla::cluster::metadata::{CollectionType, ColumnType, NativeType};
use scylla::value::{Counter, CqlDate, CqlDecimal, CqlDuration, CqlTime, CqlTimestamp, CqlTimeuuid, CqlValue, CqlVarint};

/// Scale of the Arrow decimal a CQL `decimal` column becomes (CQL decimals carry a scale per
/// value; Bowman fixes one per column, as Spark does: Decimal(38, 18)).
pub const DECIMAL_SCALE: i8 = 18;
/// `varint` becomes Decimal(38, 0): every integer of up to 38 digits.
pub const VARINT_PRECISION: u8 = 38;

fn corrupt(msg: impl Into<String>) -> ConnectorError {
    ConnectorError::new(ErrorKind::Corrupt, msg)
}

/// The Arrow type of a CQL type, or why there is none.
pub fn arrow_type(t: &ColumnType<'_>) -> Result<DataType, String> {
    Ok(match t {
        ColumnType::Native(n) => match n {
            NativeType::Ascii | NativeType::Text => DataType::Utf8,
            NativeType::Boolean => DataType::Boolean,
            NativeType::Blob => DataType::Binary,
            NativeType::Counter | NativeType::BigInt => DataType::Int64,
            NativeType::Int => DataType::Int32,
            NativeType::SmallInt => DataType::Int16,
            NativeType::TinyInt => DataType::Int8,
            NativeType::Float => DataType::Float32,
            NativeType::Double => DataType::Float64,
            NativeType::Date => DataType::Date32,
            NativeType::Time => DataType::Time64(TimeUnit::Nanosecond),
            NativeType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            NativeType::Duration => DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano),
            NativeType::Decimal => DataType::Decimal128(38, DECIMAL_SCALE),
            NativeType::Varint => DataType::Decimal128(VARINT_PRECISION, 0),
            NativeType::Uuid | NativeType::Timeuuid | NativeType::Inet => DataType::Utf8,
            other => return Err(format!("CQL type {other:?} has no Arrow mapping")),
        },
        ColumnType::Collection { typ, .. } => match typ {
            CollectionType::List(e) | CollectionType::Set(e) => {
                DataType::List(Arc::new(Field::new("item", arrow_type(e)?, true)))
            }
            CollectionType::Map(k, v) => DataType::Map(map_entries(arrow_type(k)?, arrow_type(v)?), false),
            other => return Err(format!("CQL collection {other:?} has no Arrow mapping")),
        },
        ColumnType::UserDefinedType { definition, .. } => DataType::Struct(
            definition
                .field_types
                .iter()
                .map(|(n, t)| Ok(Field::new(n.to_string(), arrow_type(t)?, true)))
                .collect::<Result<Fields, String>>()?,
        ),
        ColumnType::Tuple(ts) => DataType::Struct(
            ts.iter()
                .enumerate()
                .map(|(i, t)| Ok(Field::new(format!("{i}"), arrow_type(t)?, true)))
                .collect::<Result<Fields, String>>()?,
        ),
        ColumnType::Vector { typ, dimensions } => {
            DataType::FixedSizeList(Arc::new(Field::new("item", arrow_type(typ)?, true)), *dimensions as i32)
        }
        other => return Err(format!("CQL type {other:?} has no Arrow mapping")),
    })
}

fn map_entries(k: DataType, v: DataType) -> FieldRef {
    Arc::new(Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![Field::new("key", k, false), Field::new("value", v, true)])),
        false,
    ))
}

/// The CQL text of a type, for messages and docs.
pub fn cql_name(t: &ColumnType<'_>) -> String {
    match t {
        ColumnType::Native(n) => format!("{n:?}").to_ascii_lowercase(),
        ColumnType::Collection { typ: CollectionType::List(e), .. } => format!("list<{}>", cql_name(e)),
        ColumnType::Collection { typ: CollectionType::Set(e), .. } => format!("set<{}>", cql_name(e)),
        ColumnType::Collection { typ: CollectionType::Map(k, v), .. } => format!("map<{}, {}>", cql_name(k), cql_name(v)),
        ColumnType::UserDefinedType { definition, .. } => definition.name.to_string(),
        ColumnType::Tuple(ts) => format!("tuple<{}>", ts.iter().map(cql_name).collect::<Vec<_>>().join(", ")),
        other => format!("{other:?}"),
    }
}

/// Appends serialized CQL values of one column to an Arrow builder.
pub enum Decoder {
    Bool(BooleanBuilder),
    I8(Int8Builder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Text(StringBuilder),
    Uuid(StringBuilder),
    Inet(StringBuilder),
    Blob(BinaryBuilder),
    Timestamp(TimestampMillisecondBuilder),
    Date(Date32Builder),
    Time(Time64NanosecondBuilder),
    Duration(IntervalMonthDayNanoBuilder),
    Decimal(Decimal128Builder, i8),
    Varint(Decimal128Builder),
    List { item: FieldRef, child: Box<Decoder>, offsets: Vec<i32>, nulls: NullBufferBuilder },
    Map { entries: FieldRef, key: Box<Decoder>, value: Box<Decoder>, offsets: Vec<i32>, nulls: NullBufferBuilder },
    Struct { fields: Fields, children: Vec<Decoder>, nulls: NullBufferBuilder },
    Vector { item: FieldRef, child: Box<Decoder>, dims: usize, elem_size: Option<usize>, nulls: NullBufferBuilder },
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], ConnectorError> {
    if buf.len() < n {
        return Err(corrupt("a CQL value ended early"));
    }
    let (a, b) = buf.split_at(n);
    *buf = b;
    Ok(a)
}

fn read_i32(buf: &mut &[u8]) -> Result<i32, ConnectorError> {
    Ok(i32::from_be_bytes(take(buf, 4)?.try_into().unwrap()))
}

/// `[int n][bytes]`, n < 0 meaning null.
fn read_value<'a>(buf: &mut &'a [u8]) -> Result<Option<&'a [u8]>, ConnectorError> {
    let n = read_i32(buf)?;
    if n < 0 { Ok(None) } else { take(buf, n as usize).map(Some) }
}

fn read_vint(buf: &mut &[u8]) -> Result<i64, ConnectorError> {
    let first = *take(buf, 1)?.first().unwrap();
    let extra = first.leading_ones() as usize;
    let mut v: u64 = if extra >= 8 { 0 } else { (first & (0xff >> extra)) as u64 };
    for b in take(buf, extra)? {
        v = (v << 8) | *b as u64;
    }
    // zigzag
    Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
}

fn fixed<const N: usize>(v: &[u8], what: &str) -> Result<[u8; N], ConnectorError> {
    v.try_into().map_err(|_| corrupt(format!("a CQL {what} has {} bytes, not {N}", v.len())))
}

/// Two's-complement big-endian bytes as i128, if they fit.
fn be_i128(v: &[u8]) -> Option<i128> {
    if v.is_empty() {
        return Some(0);
    }
    if v.len() > 16 {
        let (head, tail) = v.split_at(v.len() - 16);
        let sign = if tail[0] & 0x80 != 0 { 0xff } else { 0 };
        if head.iter().any(|b| *b != sign) {
            return None;
        }
        return be_i128(tail);
    }
    let fill = if v[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut b = [fill; 16];
    b[16 - v.len()..].copy_from_slice(v);
    Some(i128::from_be_bytes(b))
}

const MAX_38: i128 = 99_999_999_999_999_999_999_999_999_999_999_999_999;

impl Decoder {
    pub fn new(t: &DataType, cql: &ColumnType<'_>, capacity: usize) -> Result<Decoder, ConnectorError> {
        let unsupported = || ConnectorError::new(ErrorKind::Unsupported, format!("cannot read CQL {}", cql_name(cql)));
        Ok(match (cql, t) {
            (ColumnType::Native(n), _) => match n {
                NativeType::Boolean => Decoder::Bool(BooleanBuilder::with_capacity(capacity)),
                NativeType::TinyInt => Decoder::I8(Int8Builder::with_capacity(capacity)),
                NativeType::SmallInt => Decoder::I16(Int16Builder::with_capacity(capacity)),
                NativeType::Int => Decoder::I32(Int32Builder::with_capacity(capacity)),
                NativeType::BigInt | NativeType::Counter => Decoder::I64(Int64Builder::with_capacity(capacity)),
                NativeType::Float => Decoder::F32(Float32Builder::with_capacity(capacity)),
                NativeType::Double => Decoder::F64(Float64Builder::with_capacity(capacity)),
                NativeType::Text | NativeType::Ascii => Decoder::Text(StringBuilder::with_capacity(capacity, capacity * 16)),
                NativeType::Uuid | NativeType::Timeuuid => Decoder::Uuid(StringBuilder::with_capacity(capacity, capacity * 36)),
                NativeType::Inet => Decoder::Inet(StringBuilder::with_capacity(capacity, capacity * 16)),
                NativeType::Blob => Decoder::Blob(BinaryBuilder::with_capacity(capacity, capacity * 16)),
                NativeType::Timestamp => Decoder::Timestamp(TimestampMillisecondBuilder::with_capacity(capacity).with_timezone("UTC")),
                NativeType::Date => Decoder::Date(Date32Builder::with_capacity(capacity)),
                NativeType::Time => Decoder::Time(Time64NanosecondBuilder::with_capacity(capacity)),
                NativeType::Duration => Decoder::Duration(IntervalMonthDayNanoBuilder::with_capacity(capacity)),
                NativeType::Decimal => {
                    let DataType::Decimal128(p, s) = t else { return Err(unsupported()) };
                    Decoder::Decimal(Decimal128Builder::with_capacity(capacity).with_precision_and_scale(*p, *s).map_err(|e| corrupt(e.to_string()))?, *s)
                }
                NativeType::Varint => Decoder::Varint(
                    Decimal128Builder::with_capacity(capacity).with_precision_and_scale(VARINT_PRECISION, 0).map_err(|e| corrupt(e.to_string()))?,
                ),
                _ => return Err(unsupported()),
            },
            (ColumnType::Collection { typ: CollectionType::List(e) | CollectionType::Set(e), .. }, DataType::List(item)) => Decoder::List {
                item: item.clone(),
                child: Box::new(Decoder::new(item.data_type(), e, capacity)?),
                offsets: vec![0],
                nulls: NullBufferBuilder::new(capacity),
            },
            (ColumnType::Collection { typ: CollectionType::Map(k, v), .. }, DataType::Map(entries, _)) => {
                let DataType::Struct(kv) = entries.data_type() else { return Err(unsupported()) };
                Decoder::Map {
                    entries: entries.clone(),
                    key: Box::new(Decoder::new(kv[0].data_type(), k, capacity)?),
                    value: Box::new(Decoder::new(kv[1].data_type(), v, capacity)?),
                    offsets: vec![0],
                    nulls: NullBufferBuilder::new(capacity),
                }
            }
            (ColumnType::UserDefinedType { definition, .. }, DataType::Struct(fields)) => Decoder::Struct {
                fields: fields.clone(),
                children: definition
                    .field_types
                    .iter()
                    .zip(fields.iter())
                    .map(|((_, ct), f)| Decoder::new(f.data_type(), ct, capacity))
                    .collect::<Result<_, _>>()?,
                nulls: NullBufferBuilder::new(capacity),
            },
            (ColumnType::Tuple(ts), DataType::Struct(fields)) => Decoder::Struct {
                fields: fields.clone(),
                children: ts.iter().zip(fields.iter()).map(|(ct, f)| Decoder::new(f.data_type(), ct, capacity)).collect::<Result<_, _>>()?,
                nulls: NullBufferBuilder::new(capacity),
            },
            (ColumnType::Vector { typ, dimensions }, DataType::FixedSizeList(item, _)) => Decoder::Vector {
                item: item.clone(),
                child: Box::new(Decoder::new(item.data_type(), typ, capacity * *dimensions as usize)?),
                dims: *dimensions as usize,
                elem_size: match typ.as_ref() {
                    ColumnType::Native(n) => n.type_size_for_vector(),
                    _ => None,
                },
                nulls: NullBufferBuilder::new(capacity),
            },
            _ => return Err(unsupported()),
        })
    }

    /// Appends one serialized value (None: null).
    pub fn append(&mut self, v: Option<&[u8]>) -> Result<(), ConnectorError> {
        // an empty value of a fixed-size type is CQL's "empty", read as NULL
        let v = match (v, &*self) {
            (Some([]), Decoder::Text(_) | Decoder::Blob(_) | Decoder::List { .. } | Decoder::Map { .. } | Decoder::Struct { .. }) => v,
            (Some([]), _) => None,
            _ => v,
        };
        match self {
            Decoder::Bool(b) => b.append_option(v.map(|v| v[0] != 0)),
            Decoder::I8(b) => b.append_option(v.map(|v| fixed::<1>(v, "tinyint")).transpose()?.map(i8::from_be_bytes)),
            Decoder::I16(b) => b.append_option(v.map(|v| fixed::<2>(v, "smallint")).transpose()?.map(i16::from_be_bytes)),
            Decoder::I32(b) => b.append_option(v.map(|v| fixed::<4>(v, "int")).transpose()?.map(i32::from_be_bytes)),
            Decoder::I64(b) => b.append_option(v.map(|v| fixed::<8>(v, "bigint")).transpose()?.map(i64::from_be_bytes)),
            Decoder::F32(b) => b.append_option(v.map(|v| fixed::<4>(v, "float")).transpose()?.map(f32::from_be_bytes)),
            Decoder::F64(b) => b.append_option(v.map(|v| fixed::<8>(v, "double")).transpose()?.map(f64::from_be_bytes)),
            Decoder::Text(b) => match v {
                Some(v) => b.append_value(std::str::from_utf8(v).map_err(|_| corrupt("a CQL text value is not UTF-8"))?),
                None => b.append_null(),
            },
            Decoder::Uuid(b) => match v {
                Some(v) => b.append_value(uuid::Uuid::from_bytes(fixed::<16>(v, "uuid")?).hyphenated().to_string()),
                None => b.append_null(),
            },
            Decoder::Inet(b) => match v {
                Some(v) => {
                    let ip = match v.len() {
                        4 => IpAddr::from(fixed::<4>(v, "inet")?),
                        16 => IpAddr::from(fixed::<16>(v, "inet")?),
                        n => return Err(corrupt(format!("a CQL inet has {n} bytes"))),
                    };
                    b.append_value(ip.to_string())
                }
                None => b.append_null(),
            },
            Decoder::Blob(b) => b.append_option(v),
            Decoder::Timestamp(b) => b.append_option(v.map(|v| fixed::<8>(v, "timestamp")).transpose()?.map(i64::from_be_bytes)),
            Decoder::Date(b) => b.append_option(
                v.map(|v| fixed::<4>(v, "date")).transpose()?.map(|d| (u32::from_be_bytes(d) as i64 - (1i64 << 31)) as i32),
            ),
            Decoder::Time(b) => b.append_option(v.map(|v| fixed::<8>(v, "time")).transpose()?.map(i64::from_be_bytes)),
            Decoder::Duration(b) => match v {
                Some(mut v) => {
                    let months = read_vint(&mut v)?;
                    let days = read_vint(&mut v)?;
                    let nanos = read_vint(&mut v)?;
                    b.append_value(IntervalMonthDayNano::new(months as i32, days as i32, nanos))
                }
                None => b.append_null(),
            },
            Decoder::Decimal(b, target) => match v {
                Some(mut v) => {
                    let scale = read_i32(&mut v)?;
                    let unscaled = be_i128(v).ok_or_else(|| corrupt("a CQL decimal has more than 38 digits"))?;
                    let diff = *target as i64 - scale as i64;
                    let value = if diff >= 0 {
                        10i128.checked_pow(diff as u32).and_then(|m| unscaled.checked_mul(m))
                    } else {
                        let d = 10i128.checked_pow((-diff) as u32);
                        match d {
                            Some(d) if unscaled % d == 0 => Some(unscaled / d),
                            _ => {
                                return Err(corrupt(format!(
                                    "a CQL decimal has {scale} fractional digits; Bowman reads decimals with {target} and would lose some"
                                )));
                            }
                        }
                    };
                    match value {
                        Some(x) if x.abs() <= MAX_38 => b.append_value(x),
                        _ => return Err(corrupt("a CQL decimal does not fit Decimal(38, 18)")),
                    }
                }
                None => b.append_null(),
            },
            Decoder::Varint(b) => match v {
                Some(v) => match be_i128(v) {
                    Some(x) if x.abs() <= MAX_38 => b.append_value(x),
                    _ => return Err(corrupt("a CQL varint has more than 38 digits")),
                },
                None => b.append_null(),
            },
            Decoder::List { child, offsets, nulls, .. } => {
                let last = *offsets.last().unwrap();
                match v {
                    Some(mut v) => {
                        let n = read_i32(&mut v)?.max(0);
                        for _ in 0..n {
                            child.append(read_value(&mut v)?)?;
                        }
                        offsets.push(last + n);
                        nulls.append_non_null();
                    }
                    None => {
                        offsets.push(last);
                        nulls.append_null();
                    }
                }
            }
            Decoder::Map { key, value, offsets, nulls, .. } => {
                let last = *offsets.last().unwrap();
                match v {
                    Some(mut v) => {
                        let n = read_i32(&mut v)?.max(0);
                        for _ in 0..n {
                            key.append(read_value(&mut v)?)?;
                            value.append(read_value(&mut v)?)?;
                        }
                        offsets.push(last + n);
                        nulls.append_non_null();
                    }
                    None => {
                        offsets.push(last);
                        nulls.append_null();
                    }
                }
            }
            Decoder::Struct { children, nulls, .. } => match v {
                Some(mut v) => {
                    for c in children.iter_mut() {
                        // a UDT value may omit trailing fields (added after it was written)
                        let f = if v.is_empty() { None } else { read_value(&mut v)? };
                        c.append(f)?;
                    }
                    nulls.append_non_null();
                }
                None => {
                    for c in children.iter_mut() {
                        c.append(None)?;
                    }
                    nulls.append_null();
                }
            },
            Decoder::Vector { child, dims, elem_size, nulls, .. } => match v {
                Some(mut v) => {
                    for _ in 0..*dims {
                        match elem_size {
                            Some(n) => child.append(Some(take(&mut v, *n)?))?,
                            None => {
                                let len = read_unsigned_vint(&mut v)?;
                                child.append(Some(take(&mut v, len)?))?
                            }
                        }
                    }
                    nulls.append_non_null();
                }
                None => {
                    for _ in 0..*dims {
                        child.append(None)?;
                    }
                    nulls.append_null();
                }
            },
        }
        Ok(())
    }

    pub fn finish(&mut self) -> ArrayRef {
        match self {
            Decoder::Bool(b) => Arc::new(b.finish()),
            Decoder::I8(b) => Arc::new(b.finish()),
            Decoder::I16(b) => Arc::new(b.finish()),
            Decoder::I32(b) => Arc::new(b.finish()),
            Decoder::I64(b) => Arc::new(b.finish()),
            Decoder::F32(b) => Arc::new(b.finish()),
            Decoder::F64(b) => Arc::new(b.finish()),
            Decoder::Text(b) | Decoder::Uuid(b) | Decoder::Inet(b) => Arc::new(b.finish()),
            Decoder::Blob(b) => Arc::new(b.finish()),
            Decoder::Timestamp(b) => Arc::new(b.finish()),
            Decoder::Date(b) => Arc::new(b.finish()),
            Decoder::Time(b) => Arc::new(b.finish()),
            Decoder::Duration(b) => Arc::new(b.finish()),
            Decoder::Decimal(b, _) | Decoder::Varint(b) => Arc::new(b.finish()),
            Decoder::List { item, child, offsets, nulls } => {
                let offs = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                Arc::new(ListArray::new(item.clone(), offs, child.finish(), nulls.finish()))
            }
            Decoder::Map { entries, key, value, offsets, nulls } => {
                let DataType::Struct(kv) = entries.data_type() else { unreachable!() };
                let st = StructArray::new(kv.clone(), vec![key.finish(), value.finish()], None);
                let offs = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                Arc::new(MapArray::new(entries.clone(), offs, st, nulls.finish(), false))
            }
            Decoder::Struct { fields, children, nulls } => {
                let cols: Vec<ArrayRef> = children.iter_mut().map(|c| c.finish()).collect();
                let n: Option<NullBuffer> = nulls.finish();
                Arc::new(StructArray::new(fields.clone(), cols, n))
            }
            Decoder::Vector { item, child, dims, nulls, .. } => {
                Arc::new(FixedSizeListArray::new(item.clone(), *dims as i32, child.finish(), nulls.finish()))
            }
        }
    }
}

fn read_unsigned_vint(buf: &mut &[u8]) -> Result<usize, ConnectorError> {
    let first = *take(buf, 1)?.first().unwrap();
    let extra = first.leading_ones() as usize;
    let mut v: u64 = if extra >= 8 { 0 } else { (first & (0xff >> extra)) as u64 };
    for b in take(buf, extra)? {
        v = (v << 8) | *b as u64;
    }
    Ok(v as usize)
}

fn bad(what: &str, t: &ColumnType<'_>, v: &ScalarValue) -> ConnectorError {
    ConnectorError::new(ErrorKind::InvalidOption, format!("cannot write {v:?} into {what} of CQL type {}", cql_name(t)))
}

fn i128_be_minimal(x: i128) -> Vec<u8> {
    let b = x.to_be_bytes();
    let mut i = 0;
    while i < 15 && ((b[i] == 0 && b[i + 1] & 0x80 == 0) || (b[i] == 0xff && b[i + 1] & 0x80 != 0)) {
        i += 1;
    }
    b[i..].to_vec()
}

/// One Arrow value as the CQL value of a column of type `t` (None: NULL).
pub fn to_cql(v: &ScalarValue, t: &ColumnType<'_>, column: &str) -> Result<Option<CqlValue>, ConnectorError> {
    if v.is_null() {
        return Ok(None);
    }
    let err = || bad(column, t, v);
    let int = || -> Result<i64, ConnectorError> {
        Ok(match v {
            ScalarValue::Int8(Some(x)) => *x as i64,
            ScalarValue::Int16(Some(x)) => *x as i64,
            ScalarValue::Int32(Some(x)) => *x as i64,
            ScalarValue::Int64(Some(x)) => *x,
            ScalarValue::UInt8(Some(x)) => *x as i64,
            ScalarValue::UInt16(Some(x)) => *x as i64,
            ScalarValue::UInt32(Some(x)) => *x as i64,
            ScalarValue::UInt64(Some(x)) => i64::try_from(*x).map_err(|_| err())?,
            _ => return Err(err()),
        })
    };
    let text = || -> Result<String, ConnectorError> {
        match v {
            ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => Ok(s.clone()),
            _ => Err(err()),
        }
    };
    Ok(Some(match t {
        ColumnType::Native(n) => match n {
            NativeType::Ascii => CqlValue::Ascii(text()?),
            NativeType::Text => CqlValue::Text(text()?),
            NativeType::Boolean => match v {
                ScalarValue::Boolean(Some(b)) => CqlValue::Boolean(*b),
                _ => return Err(err()),
            },
            NativeType::Blob => match v {
                ScalarValue::Binary(Some(b)) | ScalarValue::LargeBinary(Some(b)) | ScalarValue::BinaryView(Some(b)) => CqlValue::Blob(b.clone()),
                ScalarValue::FixedSizeBinary(_, Some(b)) => CqlValue::Blob(b.clone()),
                _ => CqlValue::Blob(text()?.into_bytes()),
            },
            NativeType::BigInt => CqlValue::BigInt(int()?),
            NativeType::Counter => CqlValue::Counter(Counter(int()?)),
            NativeType::Int => CqlValue::Int(i32::try_from(int()?).map_err(|_| err())?),
            NativeType::SmallInt => CqlValue::SmallInt(i16::try_from(int()?).map_err(|_| err())?),
            NativeType::TinyInt => CqlValue::TinyInt(i8::try_from(int()?).map_err(|_| err())?),
            NativeType::Float => match v {
                ScalarValue::Float32(Some(x)) => CqlValue::Float(*x),
                ScalarValue::Float64(Some(x)) => CqlValue::Float(*x as f32),
                _ => CqlValue::Float(int()? as f32),
            },
            NativeType::Double => match v {
                ScalarValue::Float32(Some(x)) => CqlValue::Double(*x as f64),
                ScalarValue::Float64(Some(x)) => CqlValue::Double(*x),
                ScalarValue::Decimal128(Some(x), _, s) => CqlValue::Double(*x as f64 / 10f64.powi(*s as i32)),
                _ => CqlValue::Double(int()? as f64),
            },
            NativeType::Decimal => match v {
                ScalarValue::Decimal128(Some(x), _, s) => {
                    CqlValue::Decimal(CqlDecimal::from_signed_be_bytes_and_exponent(i128_be_minimal(*x), *s as i32))
                }
                ScalarValue::Decimal256(Some(x), _, s) => {
                    let b = x.to_be_bytes();
                    CqlValue::Decimal(CqlDecimal::from_signed_be_bytes_and_exponent(b.to_vec(), *s as i32))
                }
                ScalarValue::Utf8(Some(s)) => parse_decimal(s).ok_or_else(err)?,
                _ => CqlValue::Decimal(CqlDecimal::from_signed_be_bytes_and_exponent(i128_be_minimal(int()? as i128), 0)),
            },
            NativeType::Varint => match v {
                ScalarValue::Decimal128(Some(x), _, 0) => CqlValue::Varint(CqlVarint::from_signed_bytes_be(i128_be_minimal(*x))),
                _ => CqlValue::Varint(CqlVarint::from_signed_bytes_be(i128_be_minimal(int()? as i128))),
            },
            NativeType::Uuid | NativeType::Timeuuid => {
                let u = match v {
                    ScalarValue::FixedSizeBinary(16, Some(b)) => uuid::Uuid::from_slice(b).map_err(|_| err())?,
                    _ => uuid::Uuid::parse_str(&text()?).map_err(|_| err())?,
                };
                if matches!(n, NativeType::Timeuuid) { CqlValue::Timeuuid(CqlTimeuuid::from(u)) } else { CqlValue::Uuid(u) }
            }
            NativeType::Inet => CqlValue::Inet(text()?.parse::<IpAddr>().map_err(|_| err())?),
            NativeType::Timestamp => {
                let ms = match v {
                    ScalarValue::TimestampSecond(Some(x), _) => x * 1000,
                    ScalarValue::TimestampMillisecond(Some(x), _) => *x,
                    ScalarValue::TimestampMicrosecond(Some(x), _) => x.div_euclid(1000),
                    ScalarValue::TimestampNanosecond(Some(x), _) => x.div_euclid(1_000_000),
                    ScalarValue::Date32(Some(d)) => *d as i64 * 86_400_000,
                    _ => int()?,
                };
                CqlValue::Timestamp(CqlTimestamp(ms))
            }
            NativeType::Date => match v {
                ScalarValue::Date32(Some(d)) => CqlValue::Date(CqlDate((*d as i64 + (1i64 << 31)) as u32)),
                ScalarValue::Date64(Some(ms)) => CqlValue::Date(CqlDate((ms.div_euclid(86_400_000) + (1i64 << 31)) as u32)),
                _ => return Err(err()),
            },
            NativeType::Time => match v {
                ScalarValue::Time64Nanosecond(Some(x)) => CqlValue::Time(CqlTime(*x)),
                ScalarValue::Time64Microsecond(Some(x)) => CqlValue::Time(CqlTime(x * 1000)),
                ScalarValue::Time32Millisecond(Some(x)) => CqlValue::Time(CqlTime(*x as i64 * 1_000_000)),
                ScalarValue::Time32Second(Some(x)) => CqlValue::Time(CqlTime(*x as i64 * 1_000_000_000)),
                _ => return Err(err()),
            },
            NativeType::Duration => match v {
                ScalarValue::IntervalMonthDayNano(Some(i)) => {
                    CqlValue::Duration(CqlDuration { months: i.months, days: i.days, nanoseconds: i.nanoseconds })
                }
                ScalarValue::IntervalDayTime(Some(i)) => {
                    CqlValue::Duration(CqlDuration { months: 0, days: i.days, nanoseconds: i.milliseconds as i64 * 1_000_000 })
                }
                ScalarValue::IntervalYearMonth(Some(m)) => CqlValue::Duration(CqlDuration { months: *m, days: 0, nanoseconds: 0 }),
                _ => return Err(err()),
            },
            _ => return Err(err()),
        },
        ColumnType::Collection { typ, .. } => {
            let items = |arr: &dyn Array| -> Result<Vec<ScalarValue>, ConnectorError> {
                (0..arr.len()).map(|i| ScalarValue::try_from_array(arr, i).map_err(|e| corrupt(e.to_string()))).collect()
            };
            match (typ, v) {
                (CollectionType::List(e) | CollectionType::Set(e), ScalarValue::List(l)) => {
                    let vals = items(l.value(0).as_ref())?
                        .iter()
                        .map(|x| to_cql(x, e, column)?.ok_or_else(|| bad(column, t, v)))
                        .collect::<Result<Vec<_>, _>>()?;
                    if matches!(typ, CollectionType::Set(_)) { CqlValue::Set(vals) } else { CqlValue::List(vals) }
                }
                (CollectionType::Map(kt, vt), ScalarValue::Map(m)) => {
                    let entries = m.value(0);
                    let keys = items(entries.column(0).as_ref())?;
                    let vals = items(entries.column(1).as_ref())?;
                    let mut out = Vec::with_capacity(keys.len());
                    for (k, x) in keys.iter().zip(vals.iter()) {
                        let k = to_cql(k, kt, column)?.ok_or_else(err)?;
                        let x = to_cql(x, vt, column)?.ok_or_else(err)?;
                        out.push((k, x));
                    }
                    CqlValue::Map(out)
                }
                _ => return Err(err()),
            }
        }
        ColumnType::UserDefinedType { definition, .. } => match v {
            ScalarValue::Struct(s) => {
                let mut fields = Vec::new();
                for (i, (name, ft)) in definition.field_types.iter().enumerate() {
                    let x = match s.column_by_name(name) {
                        Some(c) => to_cql(&ScalarValue::try_from_array(c.as_ref(), 0).map_err(|e| corrupt(e.to_string()))?, ft, column)?,
                        None if i < s.num_columns() => None,
                        None => None,
                    };
                    fields.push((name.to_string(), x));
                }
                CqlValue::UserDefinedType { keyspace: definition.keyspace.to_string(), name: definition.name.to_string(), fields }
            }
            _ => return Err(err()),
        },
        ColumnType::Tuple(ts) => match v {
            ScalarValue::Struct(s) if s.num_columns() == ts.len() => {
                let mut out = Vec::new();
                for (i, ft) in ts.iter().enumerate() {
                    out.push(to_cql(&ScalarValue::try_from_array(s.column(i).as_ref(), 0).map_err(|e| corrupt(e.to_string()))?, ft, column)?);
                }
                CqlValue::Tuple(out)
            }
            _ => return Err(err()),
        },
        _ => return Err(err()),
    }))
}

fn parse_decimal(s: &str) -> Option<CqlValue> {
    let s = s.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = format!("{int}{frac}");
    let x: i128 = digits.parse().ok()?;
    Some(CqlValue::Decimal(CqlDecimal::from_signed_be_bytes_and_exponent(i128_be_minimal(x), frac.len() as i32)))
}

#[allow(dead_code)]
fn _i256_unused(_: i256) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vint_and_bigint_bytes() {
        // zigzag 1 → 2, -1 → 1
        assert_eq!(read_vint(&mut &[2u8][..]).unwrap(), 1);
        assert_eq!(read_vint(&mut &[1u8][..]).unwrap(), -1);
        assert_eq!(be_i128(&[0xff]).unwrap(), -1);
        assert_eq!(be_i128(&[0x01, 0x00]).unwrap(), 256);
        for x in [0i128, 1, -1, 127, 128, -128, -129, 1 << 70, -(1 << 90)] {
            assert_eq!(be_i128(&i128_be_minimal(x)).unwrap(), x);
        }
    }

    #[test]
    fn decimal_rescales_without_loss() {
        let t = DataType::Decimal128(38, DECIMAL_SCALE);
        let mut d = Decoder::new(&t, &ColumnType::Native(NativeType::Decimal), 2).unwrap();
        // 12.5 = unscaled 125, scale 1
        d.append(Some(&[0, 0, 0, 1, 125])).unwrap();
        d.append(None).unwrap();
        let a = d.finish();
        let a = a.as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!(a.value(0), 125 * 10i128.pow(17));
        assert!(a.is_null(1));
        // 20 fractional digits do not fit a scale of 18
        let mut v = vec![0, 0, 0, 20];
        v.extend(i128_be_minimal(123));
        assert!(d.append(Some(&v)).is_err());
    }

    #[test]
    fn list_of_int() {
        let ct = ColumnType::Collection { frozen: false, typ: CollectionType::List(Box::new(ColumnType::Native(NativeType::Int))) };
        let t = arrow_type(&ct).unwrap();
        let mut d = Decoder::new(&t, &ct, 1).unwrap();
        let mut v = vec![0, 0, 0, 2];
        v.extend([0, 0, 0, 4, 0, 0, 0, 7, 0, 0, 0, 4, 0, 0, 0, 9]);
        d.append(Some(&v)).unwrap();
        let a = d.finish();
        let l = a.as_any().downcast_ref::<ListArray>().unwrap();
        assert_eq!(l.value(0).as_any().downcast_ref::<Int32Array>().unwrap().values(), &[7, 9]);
    }
}
