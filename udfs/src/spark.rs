//! Spark SQL functions the platform's batch SQL uses, with Spark's semantics.
//!
//! From `datafusion-spark` (Apache DataFusion's Spark-compatible library): `datediff`, `size`,
//! `array`, `collect_list`, `collect_set`. Written here because that library does not
//! have them yet: `from_unixtime`, `unix_timestamp`, `to_date`, `date_format` (Spark's
//! datetime patterns such as `yyyy-MM-dd HH:mm:ss`, in UTC, Bowman's session time zone) and
//! `get_json_object` (JSONPath `$.a.b[0]`); `date_add` too, since that library's takes only
//! 32-bit day counts. `nvl` is DataFusion's own; `explode` is
//! DataFusion's `unnest` (rewritten in the `sql` crate); `from_json` is in [`crate::from_json`].

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Builder, Int64Builder, StringArray, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMicrosecondType};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    AggregateUDF, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

/// The Spark functions Bowman takes from datafusion-spark, by name.
const FROM_DATAFUSION_SPARK: &[&str] = &["date_diff", "size", "array"];

pub fn scalar_functions() -> Vec<Arc<ScalarUDF>> {
    let mut out: Vec<Arc<ScalarUDF>> = datafusion_spark::all_default_scalar_functions()
        .into_iter()
        .filter(|f| FROM_DATAFUSION_SPARK.contains(&f.name()))
        .collect();
    out.push(Arc::new(ScalarUDF::from(SparkFn::new("from_unixtime", Kind::FromUnixtime))));
    out.push(Arc::new(ScalarUDF::from(SparkFn::new("unix_timestamp", Kind::UnixTimestamp))));
    out.push(Arc::new(ScalarUDF::from(SparkFn::new("to_date", Kind::ToDate))));
    out.push(Arc::new(ScalarUDF::from(SparkFn::new("date_format", Kind::DateFormat))));
    out.push(Arc::new(ScalarUDF::from(SparkFn::new("get_json_object", Kind::GetJsonObject))));
    // datafusion-spark's date_add takes only 8-32 bit day counts; SQL integer literals are 64-bit here.
    out.push(Arc::new(ScalarUDF::from(SparkFn::new("date_add", Kind::DateAdd))));
    out
}

pub fn aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    datafusion_spark::all_default_aggregate_functions()
        .into_iter()
        .filter(|f| matches!(f.name(), "collect_list" | "collect_set"))
        .collect()
}

/// Spark's datetime pattern (`yyyy-MM-dd HH:mm:ss`) as a chrono format string.
pub fn java_pattern(p: &str) -> Result<String> {
    let chars: Vec<char> = p.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // Quoted literal; '' is a quote.
            let mut j = i + 1;
            if j < chars.len() && chars[j] == '\'' {
                out.push('\'');
                i += 2;
                continue;
            }
            while j < chars.len() && chars[j] != '\'' {
                if chars[j] == '%' {
                    out.push('%');
                }
                out.push(chars[j]);
                j += 1;
            }
            i = j + 1;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            if c == '%' {
                out.push('%');
            }
            out.push(c);
            i += 1;
            continue;
        }
        let mut n = 1;
        while i + n < chars.len() && chars[i + n] == c {
            n += 1;
        }
        let spec = match (c, n) {
            ('y', 2) => "%y",
            ('y', _) => "%Y",
            ('M', 1) => "%-m",
            ('M', 2) => "%m",
            ('M', 3) => "%b",
            ('M', _) => "%B",
            ('d', 1) => "%-d",
            ('d', _) => "%d",
            ('D', _) => "%j",
            ('H', 1) => "%-H",
            ('H', _) => "%H",
            ('h', 1) => "%-I",
            ('h', _) => "%I",
            ('m', 1) => "%-M",
            ('m', _) => "%M",
            ('s', 1) => "%-S",
            ('s', _) => "%S",
            ('S', 1..=3) => "%3f",
            ('S', 4..=6) => "%6f",
            ('S', _) => "%9f",
            ('a', _) => "%p",
            ('E', 1..=3) => "%a",
            ('E', _) => "%A",
            ('Z', _) | ('x', _) => "%z",
            ('X', _) | ('z', _) => "%:z",
            _ => return exec_err!("datetime pattern letter '{c}' in '{p}' is not supported"),
        };
        out.push_str(spec);
        i += n;
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    FromUnixtime,
    UnixTimestamp,
    ToDate,
    DateFormat,
    GetJsonObject,
    DateAdd,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SparkFn {
    name: &'static str,
    kind: Kind,
    signature: Signature,
}

impl SparkFn {
    fn new(name: &'static str, kind: Kind) -> Self {
        let v = Volatility::Immutable;
        let signature = match kind {
            Kind::FromUnixtime => Signature::one_of(vec![TypeSignature::Any(1), TypeSignature::Any(2)], v),
            Kind::UnixTimestamp => Signature::one_of(vec![TypeSignature::Nullary, TypeSignature::Any(1), TypeSignature::Any(2)], Volatility::Stable),
            Kind::ToDate | Kind::DateFormat | Kind::GetJsonObject => Signature::one_of(vec![TypeSignature::Any(1), TypeSignature::Any(2)], v),
            Kind::DateAdd => Signature::any(2, v),
        };
        SparkFn { name, kind, signature }
    }
}

/// The optional pattern argument (a constant string), as a chrono format.
fn pattern_arg(args: &[ColumnarValue], i: usize, default: &str) -> Result<String> {
    match args.get(i) {
        None => java_pattern(default),
        Some(ColumnarValue::Scalar(s)) => match s.try_as_str() {
            Some(Some(p)) => java_pattern(p),
            Some(None) => java_pattern(default),
            None => exec_err!("the pattern must be a string"),
        },
        Some(ColumnarValue::Array(_)) => exec_err!("the pattern must be a constant string"),
    }
}

fn as_micros(a: &ArrayRef) -> Result<ArrayRef> {
    Ok(cast(a, &DataType::Timestamp(TimeUnit::Microsecond, None))?)
}

/// Parse text as Spark does with a pattern; unparsable text is NULL (Spark's non-ANSI mode).
pub(crate) fn parse_datetime(s: &str, fmt: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s, fmt)
        .ok()
        .or_else(|| NaiveDate::parse_from_str(s, fmt).ok().map(|d| d.and_hms_opt(0, 0, 0).expect("midnight")))
}

/// Text as a date (days since the epoch) the way Spark's `to_date` reads it: with a pattern (a
/// chrono format from [`java_pattern`]), or without one a date or a timestamp's date part.
pub(crate) fn spark_date(text: &str, fmt: Option<&str>) -> Option<i32> {
    let text = text.trim();
    let date = match fmt {
        Some(f) => parse_datetime(text, f).map(|t| t.date()),
        None => NaiveDate::parse_from_str(text.get(..10).unwrap_or(text), "%Y-%m-%d").ok(),
    }?;
    i32::try_from(date.signed_duration_since(NaiveDate::default()).num_days()).ok()
}

fn get_json_object(json: &str, path: &str) -> Option<String> {
    let mut v: serde_json::Value = serde_json::from_str(json).ok()?;
    let rest = path.strip_prefix('$')?;
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let mut key = String::new();
                while let Some(&n) = chars.peek() {
                    if n == '.' || n == '[' {
                        break;
                    }
                    key.push(n);
                    chars.next();
                }
                v = v.get_mut(&key)?.take();
            }
            '[' => {
                let mut idx = String::new();
                for n in chars.by_ref() {
                    if n == ']' {
                        break;
                    }
                    idx.push(n);
                }
                let idx = idx.trim();
                if let Some(key) = idx.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')) {
                    v = v.get_mut(key)?.take();
                } else {
                    v = v.get_mut(idx.parse::<usize>().ok()?)?.take();
                }
            }
            _ => return None,
        }
    }
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

impl ScalarUDFImpl for SparkFn {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(match self.kind {
            Kind::FromUnixtime | Kind::DateFormat | Kind::GetJsonObject => DataType::Utf8,
            Kind::UnixTimestamp => DataType::Int64,
            Kind::ToDate | Kind::DateAdd => DataType::Date32,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let values = &args.args;
        let first: ArrayRef = match values.first() {
            Some(v) => v.to_array(n)?,
            None => {
                // unix_timestamp(): now.
                return Ok(ColumnarValue::Scalar(datafusion::scalar::ScalarValue::Int64(Some(Utc::now().timestamp()))));
            }
        };
        let out: ArrayRef = match self.kind {
            Kind::DateAdd => {
                let days = cast(&first, &DataType::Date32)?;
                let days = days.as_primitive::<datafusion::arrow::datatypes::Date32Type>();
                let add = values[1].to_array(n)?;
                let add = cast(&add, &DataType::Int64)?;
                let add = add.as_primitive::<Int64Type>();
                let mut b = Date32Builder::with_capacity(n);
                for i in 0..n {
                    if days.is_null(i) || add.is_null(i) {
                        b.append_null();
                        continue;
                    }
                    match i32::try_from(days.value(i) as i64 + add.value(i)) {
                        Ok(d) => b.append_value(d),
                        Err(_) => return exec_err!("date_add: the result is out of the date range"),
                    }
                }
                Arc::new(b.finish())
            }
            Kind::FromUnixtime => {
                let fmt = pattern_arg(values, 1, "yyyy-MM-dd HH:mm:ss")?;
                let secs = cast(&first, &DataType::Int64)?;
                let secs = secs.as_primitive::<Int64Type>();
                let mut b = StringBuilder::with_capacity(n, n * 19);
                for i in 0..n {
                    match (secs.is_null(i), DateTime::from_timestamp(secs.value(i), 0)) {
                        (false, Some(t)) => b.append_value(t.naive_utc().format(&fmt).to_string()),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            Kind::UnixTimestamp => {
                let mut b = Int64Builder::with_capacity(n);
                if matches!(first.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
                    let fmt = pattern_arg(values, 1, "yyyy-MM-dd HH:mm:ss")?;
                    let s = cast(&first, &DataType::Utf8)?;
                    let s = s.as_string::<i32>();
                    for i in 0..n {
                        b.append_option(if s.is_null(i) { None } else { parse_datetime(s.value(i), &fmt).map(|t| t.and_utc().timestamp()) });
                    }
                } else {
                    let t = as_micros(&first)?;
                    let t = t.as_primitive::<TimestampMicrosecondType>();
                    for i in 0..n {
                        b.append_option((!t.is_null(i)).then(|| t.value(i).div_euclid(1_000_000)));
                    }
                }
                Arc::new(b.finish())
            }
            Kind::ToDate => {
                let mut b = Date32Builder::with_capacity(n);
                if matches!(first.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
                    let fmt = if values.len() > 1 { Some(pattern_arg(values, 1, "yyyy-MM-dd")?) } else { None };
                    let s = cast(&first, &DataType::Utf8)?;
                    let s = s.as_string::<i32>();
                    for i in 0..n {
                        b.append_option(if s.is_null(i) { None } else { spark_date(s.value(i), fmt.as_deref()) });
                    }
                } else {
                    return Ok(ColumnarValue::Array(cast(&first, &DataType::Date32)?));
                }
                Arc::new(b.finish())
            }
            Kind::DateFormat => {
                let fmt = pattern_arg(values, 1, "yyyy-MM-dd HH:mm:ss")?;
                let t = as_micros(&first)?;
                let t = t.as_primitive::<TimestampMicrosecondType>();
                let mut b = StringBuilder::with_capacity(n, n * 16);
                for i in 0..n {
                    match (t.is_null(i), DateTime::from_timestamp_micros(t.value(i))) {
                        (false, Some(ts)) => b.append_value(ts.naive_utc().format(&fmt).to_string()),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            Kind::GetJsonObject => {
                let path = match values.get(1) {
                    Some(ColumnarValue::Scalar(s)) => s.try_as_str().flatten().map(str::to_string),
                    _ => return exec_err!("get_json_object takes a constant JSONPath such as '$.a.b'"),
                };
                let s = cast(&first, &DataType::Utf8)?;
                let s = s.as_string::<i32>();
                let out: StringArray = (0..n)
                    .map(|i| match (&path, s.is_null(i)) {
                        (Some(p), false) => get_json_object(s.value(i), p),
                        _ => None,
                    })
                    .collect();
                Arc::new(out)
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_patterns() {
        assert_eq!(java_pattern("yyyy-MM-dd HH:mm:ss").unwrap(), "%Y-%m-%d %H:%M:%S");
        assert_eq!(java_pattern("dd/MM/yy").unwrap(), "%d/%m/%y");
        assert_eq!(java_pattern("yyyy-MM-dd'T'HH:mm:ss.SSS").unwrap(), "%Y-%m-%dT%H:%M:%S%.3f".replace("%.3f", ".%3f"));
        assert!(java_pattern("qqq").is_err());
    }

    #[test]
    fn json_paths() {
        let j = r#"{"a":"b","c":{"d":[1,{"e":"f"}]},"n":null}"#;
        assert_eq!(get_json_object(j, "$.a").as_deref(), Some("b"));
        assert_eq!(get_json_object(j, "$.c.d[1].e").as_deref(), Some("f"));
        assert_eq!(get_json_object(j, "$.c.d").as_deref(), Some("[1,{\"e\":\"f\"}]"));
        assert_eq!(get_json_object(j, "$.n"), None);
        assert_eq!(get_json_object(j, "$.missing"), None);
        assert_eq!(get_json_object("not json", "$.a"), None);
    }
}
