//! Spark's `from_json(json, schema [, options])` for flat schemas: a JSON object string parsed
//! into a struct whose fields the schema names, e.g.
//! `from_json('{"a":1, "b":0.8}', 'a INT, b DOUBLE')` is `{a: 1, b: 0.8}`.
//!
//! Semantics are Spark 3's (PERMISSIVE mode):
//! * a NULL string gives a NULL struct; text that is not a JSON object gives a struct whose
//!   fields are all NULL;
//! * a key the schema does not name is ignored, a field the object lacks is NULL, and a value
//!   that does not fit its field's type (`"x"` for an INT, `1.5` for an INT, an INT out of range)
//!   makes that field NULL and keeps the others;
//! * a STRING field takes a JSON string as is and any other value as its JSON text;
//! * DOUBLE and FLOAT take numbers and the strings `NaN`, `Infinity`, `-Infinity`;
//! * DATE and TIMESTAMP take strings in the `dateFormat` / `timestampFormat` options (Spark
//!   datetime patterns; by default ISO 8601 forms such as `2015-08-26` and
//!   `2015-08-26T10:00:00.123Z`); a TIMESTAMP also takes a number of seconds since the epoch.
//!
//! The schema is Spark DDL (`a INT, b STRING` or `STRUCT<a: INT, b: STRING>`). Bowman's type
//! grammar lives in the `sql` crate, which hands its parser to [`FromJsonFunc::new`].

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int64Builder,
    StringBuilder, StructArray, TimestampMicrosecondBuilder,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::kernels::cast_utils::parse_decimal;
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Field, FieldRef, Fields, TimeUnit};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use serde_json::Value;

use crate::spark::{java_pattern, parse_datetime, spark_date};

/// Parses a type written in SQL (Bowman's grammar) into an Arrow type.
pub type TypeParser = fn(&str) -> std::result::Result<DataType, String>;

/// `from_json(json, schema [, options])`.
#[derive(Debug)]
pub struct FromJsonFunc {
    signature: Signature,
    parse_type: TypeParser,
}

impl PartialEq for FromJsonFunc {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for FromJsonFunc {}

impl std::hash::Hash for FromJsonFunc {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "from_json".hash(state);
    }
}

impl FromJsonFunc {
    pub fn new(parse_type: TypeParser) -> Self {
        FromJsonFunc {
            signature: Signature::one_of(vec![TypeSignature::Any(2), TypeSignature::Any(3)], Volatility::Immutable),
            parse_type,
        }
    }

    /// The struct type a schema string describes; only flat schemas.
    fn schema(&self, text: &str) -> Result<Fields> {
        let trimmed = text.trim();
        let as_struct = if trimmed.len() >= 7 && trimmed[..7].eq_ignore_ascii_case("struct<") {
            trimmed.to_string()
        } else {
            format!("STRUCT<{trimmed}>")
        };
        let t = match (self.parse_type)(&as_struct) {
            Ok(t) => t,
            Err(e) => return plan_err!("from_json: '{text}' is not a schema such as 'a INT, b STRING': {e}"),
        };
        let DataType::Struct(fields) = t else { return plan_err!("from_json: '{text}' is not a struct schema") };
        for f in fields.iter() {
            if !supported(f.data_type()) {
                return plan_err!(
                    "from_json: field {} has type {}; Bowman's from_json reads flat schemas (BOOLEAN, integers, FLOAT, DOUBLE, DECIMAL, STRING, DATE, TIMESTAMP)",
                    f.name(),
                    f.data_type()
                );
            }
        }
        // Nullable whatever the schema says: a missing key is NULL.
        Ok(fields.iter().map(|f| Field::new(f.name(), f.data_type().clone(), true)).collect())
    }
}

fn supported(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(..)
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Date32
            | DataType::Timestamp(TimeUnit::Microsecond, _)
    )
}

/// The `dateFormat` and `timestampFormat` options, as chrono formats.
#[derive(Default)]
struct Formats {
    date: Option<String>,
    timestamp: Option<String>,
}

fn options(arg: Option<&ColumnarValue>) -> Result<Formats> {
    let mut out = Formats::default();
    let Some(arg) = arg else { return Ok(out) };
    let ColumnarValue::Scalar(ScalarValue::Map(map)) = arg else {
        return exec_err!("from_json: the options must be a constant map, e.g. map('timestampFormat', 'dd/MM/yyyy')");
    };
    if map.is_empty() || map.is_null(0) {
        return Ok(out);
    }
    let entries = map.value(0);
    let keys = cast(entries.column(0), &DataType::Utf8)?;
    let values = cast(entries.column(1), &DataType::Utf8)?;
    let (keys, values) = (keys.as_string::<i32>(), values.as_string::<i32>());
    for i in 0..keys.len() {
        if keys.is_null(i) || values.is_null(i) {
            continue;
        }
        // Spark's option names are case-insensitive; options it does not know are ignored, as Spark does.
        match keys.value(i).to_ascii_lowercase().as_str() {
            "dateformat" => out.date = Some(java_pattern(values.value(i))?),
            "timestampformat" => out.timestamp = Some(java_pattern(values.value(i))?),
            _ => {}
        }
    }
    Ok(out)
}

/// One output column being built.
enum Column {
    Bool(BooleanBuilder),
    /// Integers of any width, range-checked against `bits`.
    Int(Int64Builder, u32),
    Float(Float64Builder),
    Decimal(Decimal128Builder, u8, i8),
    Str(StringBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl Column {
    fn new(t: &DataType, n: usize) -> Self {
        match t {
            DataType::Boolean => Column::Bool(BooleanBuilder::with_capacity(n)),
            DataType::Int8 => Column::Int(Int64Builder::with_capacity(n), 8),
            DataType::Int16 => Column::Int(Int64Builder::with_capacity(n), 16),
            DataType::Int32 => Column::Int(Int64Builder::with_capacity(n), 32),
            DataType::Int64 => Column::Int(Int64Builder::with_capacity(n), 64),
            DataType::Float32 | DataType::Float64 => Column::Float(Float64Builder::with_capacity(n)),
            DataType::Decimal128(p, s) => Column::Decimal(Decimal128Builder::with_capacity(n), *p, *s),
            DataType::Date32 => Column::Date(Date32Builder::with_capacity(n)),
            DataType::Timestamp(..) => Column::Timestamp(TimestampMicrosecondBuilder::with_capacity(n)),
            _ => Column::Str(StringBuilder::with_capacity(n, n * 8)),
        }
    }

    fn append_null(&mut self) {
        match self {
            Column::Bool(b) => b.append_null(),
            Column::Int(b, _) => b.append_null(),
            Column::Float(b) => b.append_null(),
            Column::Decimal(b, ..) => b.append_null(),
            Column::Str(b) => b.append_null(),
            Column::Date(b) => b.append_null(),
            Column::Timestamp(b) => b.append_null(),
        }
    }

    /// Append `v` converted to this column's type, or NULL where Spark's parser fails.
    fn append(&mut self, v: Option<&Value>, formats: &Formats) {
        let Some(v) = v.filter(|v| !v.is_null()) else { return self.append_null() };
        match self {
            Column::Bool(b) => b.append_option(v.as_bool()),
            Column::Int(b, bits) => {
                let fits = |i: i64| *bits == 64 || (i >= -(1i64 << (*bits - 1)) && i < (1i64 << (*bits - 1)));
                b.append_option(v.as_i64().filter(|i| fits(*i)))
            }
            Column::Float(b) => b.append_option(match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => non_numeric(s),
                _ => None,
            }),
            Column::Decimal(b, p, s) => {
                let text = match v {
                    Value::Number(n) => Some(n.to_string()),
                    Value::String(s) => Some(s.trim().to_string()),
                    _ => None,
                };
                b.append_option(text.and_then(|t| decimal(&t, *p, *s)))
            }
            Column::Str(b) => match v {
                Value::String(s) => b.append_value(s),
                other => b.append_value(other.to_string()),
            },
            Column::Date(b) => b.append_option(v.as_str().and_then(|s| spark_date(s, formats.date.as_deref()))),
            Column::Timestamp(b) => b.append_option(match v {
                Value::String(s) => parse_timestamp(s, formats.timestamp.as_deref()),
                Value::Number(n) => n.as_i64().and_then(|secs| secs.checked_mul(1_000_000)),
                _ => None,
            }),
        }
    }

    fn finish(self, t: &DataType) -> Result<ArrayRef> {
        let a: ArrayRef = match self {
            Column::Bool(mut b) => Arc::new(b.finish()),
            Column::Int(mut b, _) => Arc::new(b.finish()),
            Column::Float(mut b) => Arc::new(b.finish()),
            Column::Decimal(mut b, p, s) => Arc::new(b.finish().with_precision_and_scale(p, s)?),
            Column::Str(mut b) => Arc::new(b.finish()),
            Column::Date(mut b) => Arc::new(b.finish()),
            Column::Timestamp(mut b) => Arc::new(b.finish()),
        };
        Ok(if a.data_type() == t { a } else { cast(&a, t)? })
    }
}

/// A decimal rounded HALF_UP to `scale` digits, NULL when it needs more than `precision`
/// digits (as Spark's `Decimal.set`). Parsing one digit more than the scale keeps exactly the
/// digit that decides the rounding.
fn decimal(text: &str, precision: u8, scale: i8) -> Option<i128> {
    let extra = parse_decimal::<Decimal128Type>(text, 38, scale.checked_add(1)?).ok()?;
    let (q, r) = (extra / 10, extra % 10);
    let v = if r.abs() >= 5 { q + r.signum() } else { q };
    (v.unsigned_abs() < 10u128.pow(u32::from(precision))).then_some(v)
}

/// The non-numeric doubles Spark's JSON parser accepts as strings.
fn non_numeric(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "Infinity" | "+Infinity" | "INF" | "+INF" => Some(f64::INFINITY),
        "-Infinity" | "-INF" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

fn parse_timestamp(s: &str, format: Option<&str>) -> Option<i64> {
    let s = s.trim();
    let t = match format {
        Some(f) => DateTime::parse_from_str(s, f).map(|t| t.naive_utc()).ok().or_else(|| parse_datetime(s, f))?,
        None => DateTime::parse_from_rfc3339(s)
            .map(|t| t.naive_utc())
            .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f"))
            .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
            .or_else(|_| NaiveDate::parse_from_str(s, "%Y-%m-%d").map(|d| d.and_hms_opt(0, 0, 0).expect("midnight")))
            .ok()?,
    };
    Some(t.and_utc().timestamp_micros())
}

impl ScalarUDFImpl for FromJsonFunc {
    fn name(&self) -> &str {
        "from_json"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        plan_err!("from_json: the return type depends on the schema argument")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let schema = match args.scalar_arguments.get(1) {
            Some(Some(s)) => match s.try_as_str() {
                Some(Some(text)) => text.to_string(),
                _ => return plan_err!("from_json: the schema must be a string such as 'a INT, b STRING'"),
            },
            _ => return plan_err!("from_json: the schema must be a constant string such as 'a INT, b STRING'"),
        };
        Ok(Arc::new(Field::new("from_json", DataType::Struct(self.schema(&schema)?), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let DataType::Struct(fields) = args.return_field.data_type().clone() else {
            return exec_err!("from_json: the return type is not a struct");
        };
        let formats = options(args.args.get(2))?;
        let n = args.number_rows;
        let json = cast(&args.args[0].to_array(n)?, &DataType::Utf8)?;
        let json = json.as_string::<i32>();
        let mut columns: Vec<Column> = fields.iter().map(|f| Column::new(f.data_type(), n)).collect();
        let mut valid = Vec::with_capacity(n);
        for i in 0..n {
            if json.is_null(i) {
                valid.push(false);
                columns.iter_mut().for_each(Column::append_null);
                continue;
            }
            valid.push(true);
            match serde_json::from_str::<Value>(json.value(i)) {
                Ok(Value::Object(obj)) => {
                    for (c, f) in columns.iter_mut().zip(fields.iter()) {
                        c.append(obj.get(f.name()), &formats);
                    }
                }
                // Not JSON, or not an object: every field NULL (Spark's PERMISSIVE mode).
                _ => columns.iter_mut().for_each(Column::append_null),
            }
        }
        let arrays = columns.into_iter().zip(fields.iter()).map(|(c, f)| c.finish(f.data_type())).collect::<Result<Vec<_>>>()?;
        Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(fields, arrays, Some(NullBuffer::from(valid)))?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(spark_date("2015-08-26", None), Some(16673));
        assert_eq!(spark_date("26/08/2015", Some(&java_pattern("dd/MM/yyyy").unwrap())), Some(16673));
        assert_eq!(parse_timestamp("2015-08-26T00:00:00Z", None), Some(16673 * 86_400_000_000));
        assert_eq!(parse_timestamp("2015-08-26 00:00:01.5", None), Some(16673 * 86_400_000_000 + 1_500_000));
        assert_eq!(parse_timestamp("26/08/2015", Some(&java_pattern("dd/MM/yyyy").unwrap())), Some(16673 * 86_400_000_000));
        assert_eq!(parse_timestamp("yesterday", None), None);
        assert_eq!(decimal("12.345", 5, 2), Some(1235));
        assert_eq!(decimal("-12.345", 5, 2), Some(-1235));
        assert_eq!(decimal("12.3449", 5, 2), Some(1234));
        assert_eq!(decimal("999.995", 5, 2), None);
        assert_eq!(decimal("1e2", 5, 2), Some(10000));
        assert_eq!(non_numeric("NaN").map(f64::is_nan), Some(true));
    }
}
