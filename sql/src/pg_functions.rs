//! PostgreSQL's catalog functions that drivers call while introspecting and that
//! `datafusion-pg-catalog` does not provide: `pg_get_serial_sequence`, `obj_description`,
//! `col_description`, `shobj_description` (pgjdbc's `getColumns`/`getTables`, DBeaver,
//! SQLAlchemy's comment reflection), `_pg_expandarray` (pgjdbc's `getPrimaryKeys` and
//! `getIndexInfo`, through `information_schema._pg_expandarray`) and `like_escape` (LIKE with
//! an escape character other than backslash).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array, ListArray, StructArray, new_null_array};
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{self, Expr};

pub(crate) fn register(ctx: &SessionContext) {
    // Bowman has no sequences: no column is a serial.
    ctx.register_udf(no_text("pg_get_serial_sequence", &[2]));
    // Comments live in Bowman's catalog (SHOW CREATE TABLE, DESCRIBE), not in pg_description,
    // which is empty: PostgreSQL answers NULL for an object without a description.
    ctx.register_udf(no_text("obj_description", &[1, 2]));
    ctx.register_udf(no_text("col_description", &[2]));
    ctx.register_udf(no_text("shobj_description", &[2]));
    ctx.register_udf(ScalarUDF::new_from_impl(ExpandArray::new()));
    ctx.register_udf(like_escape());
    ctx.register_udf(ScalarUDF::new_from_impl(JsonBuildObject { signature: Signature::variadic_any(Volatility::Immutable) }));
}

/// `json_build_object(key, value, ...)`: a JSON object as text (SQLAlchemy 2.1's column
/// reflection builds identity and collation details with it).
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if args.len() % 2 != 0 {
            return plan_err!("json_build_object: argument list must have even number of elements");
        }
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::StringArray;
        use std::fmt::Write;
        let rows = args.number_rows;
        let arrays: Vec<ArrayRef> = args.args.iter().map(|a| a.to_array(rows)).collect::<Result<_>>()?;
        let texts: Vec<ArrayRef> =
            arrays.iter().map(|a| datafusion::arrow::compute::cast(a, &DataType::Utf8)).collect::<std::result::Result<_, _>>()?;
        let quote = |s: &str, out: &mut String| {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 => {
                        let _ = write!(out, "\\u{:04x}", c as u32);
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
        };
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            let mut json = String::from("{");
            for pair in 0..arrays.len() / 2 {
                let (k, v) = (pair * 2, pair * 2 + 1);
                if arrays[k].is_null(row) || arrays[k].data_type() == &DataType::Null {
                    return exec_err!("json_build_object: null value not allowed for object key");
                }
                if pair > 0 {
                    json.push_str(", ");
                }
                quote(texts[k].as_string::<i32>().value(row), &mut json);
                json.push_str(" : ");
                let value = texts[v].as_string::<i32>();
                match arrays[v].data_type() {
                    DataType::Null => json.push_str("null"),
                    _ if arrays[v].is_null(row) => json.push_str("null"),
                    DataType::Boolean
                    | DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::UInt8
                    | DataType::UInt16
                    | DataType::UInt32
                    | DataType::UInt64
                    | DataType::Float32
                    | DataType::Float64
                    | DataType::Decimal128(..) => json.push_str(value.value(row)),
                    _ => quote(value.value(row), &mut json),
                }
            }
            json.push('}');
            out.push(Some(json));
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
    }
}

/// `x LIKE p ESCAPE 'c'` with an escape character other than backslash (SQLAlchemy's
/// `startswith(..., autoescape=True)` writes `ESCAPE '/'`) becomes `x LIKE like_escape(p, 'c')`:
/// DataFusion's LIKE only knows backslash, and PostgreSQL's `like_escape` rewrites a pattern
/// to it. The pattern may be any expression (a bound parameter, a concatenation).
pub(crate) fn rewrite_like_escape(stmt: &mut ast::Statement) {
    use std::ops::ControlFlow;
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let Expr::Like { pattern, escape_char, .. } | Expr::ILike { pattern, escape_char, .. } = e {
            let Some(ast::Value::SingleQuotedString(c)) = escape_char.as_ref().map(|v| &v.value) else {
                return ControlFlow::<()>::Continue(());
            };
            if c == "\\" {
                return ControlFlow::Continue(());
            }
            let sql = format!("like_escape({pattern}, '{}')", c.replace('\'', "''"));
            let dialect = datafusion::sql::sqlparser::dialect::GenericDialect {};
            if let Ok(call) = datafusion::sql::sqlparser::parser::Parser::new(&dialect).try_with_sql(&sql).and_then(|mut p| p.parse_expr()) {
                **pattern = call;
                *escape_char = None;
            }
        }
        ControlFlow::Continue(())
    });
}

/// `like_escape(pattern, escape)`: `pattern` with `escape` as its escape character rewritten to
/// use backslash (an empty `escape` means none: every character is literal).
fn like_escape() -> ScalarUDF {
    use datafusion::arrow::array::StringArray;
    fn translate(pattern: &str, escape: &str) -> Result<String> {
        let mut esc = escape.chars();
        let esc = match (esc.next(), esc.next()) {
            (None, _) => None,
            (Some(c), None) => Some(c),
            _ => return exec_err!("invalid escape string: escape string must be empty or one character"),
        };
        let mut out = String::with_capacity(pattern.len() + 4);
        let mut chars = pattern.chars();
        while let Some(ch) = chars.next() {
            if Some(ch) == esc {
                match chars.next() {
                    Some(next @ ('%' | '_' | '\\')) => {
                        out.push('\\');
                        out.push(next);
                    }
                    Some(next) => out.push(next),
                    None => return exec_err!("LIKE pattern must not end with escape character"),
                }
            } else if ch == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(ch);
            }
        }
        Ok(out)
    }
    datafusion::logical_expr::create_udf(
        "like_escape",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = args.iter().find_map(|a| if let ColumnarValue::Array(a) = a { Some(a.len()) } else { None });
            let arrays: Vec<ArrayRef> = args.iter().map(|a| a.to_array(rows.unwrap_or(1))).collect::<Result<_>>()?;
            let (patterns, escapes) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
            let out: StringArray = (0..patterns.len())
                .map(|i| {
                    if patterns.is_null(i) || escapes.is_null(i) {
                        Ok(None)
                    } else {
                        translate(patterns.value(i), escapes.value(i)).map(Some)
                    }
                })
                .collect::<Result<_>>()?;
            Ok(match rows {
                Some(_) => ColumnarValue::Array(Arc::new(out)),
                None => ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?),
            })
        }),
    )
}

/// `current_setting(name [, missing_ok])` over a snapshot of the session's settings, for names
/// that are bound parameters (SQLAlchemy 2.1 sends `current_setting($1)`); literal names are
/// inlined before planning.
pub(crate) fn current_setting(values: std::collections::HashMap<String, String>) -> ScalarUDF {
    #[derive(Debug)]
    struct CurrentSetting {
        signature: Signature,
        values: std::collections::BTreeMap<String, String>,
    }
    impl PartialEq for CurrentSetting {
        fn eq(&self, other: &Self) -> bool {
            self.values == other.values
        }
    }
    impl Eq for CurrentSetting {}
    impl std::hash::Hash for CurrentSetting {
        fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
            self.values.hash(state)
        }
    }
    impl ScalarUDFImpl for CurrentSetting {
        fn name(&self) -> &str {
            "current_setting"
        }
        fn signature(&self) -> &Signature {
            &self.signature
        }
        fn return_type(&self, _: &[DataType]) -> Result<DataType> {
            Ok(DataType::Utf8)
        }
        fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
            use datafusion::arrow::array::StringArray;
            let rows = args.number_rows;
            let names = datafusion::arrow::compute::cast(&args.args[0].to_array(rows)?, &DataType::Utf8)?;
            let missing_ok = match args.args.get(1) {
                Some(a) => Some(datafusion::arrow::compute::cast(&a.to_array(rows)?, &DataType::Boolean)?),
                None => None,
            };
            let names = names.as_string::<i32>();
            let out: StringArray = (0..rows)
                .map(|i| {
                    if names.is_null(i) {
                        return Ok(None);
                    }
                    match self.values.get(&crate::settings::setting_key(names.value(i))) {
                        Some(v) => Ok(Some(v.clone())),
                        None if missing_ok.as_ref().is_some_and(|m| m.as_boolean().value(i)) => Ok(None),
                        None => Err(datafusion::error::DataFusionError::External(Box::new(
                            crate::error::BowmanError::UnknownSetting(names.value(i).to_string()),
                        ))),
                    }
                })
                .collect::<Result<_>>()?;
            Ok(ColumnarValue::Array(Arc::new(out)))
        }
    }
    ScalarUDF::new_from_impl(CurrentSetting {
        signature: Signature::one_of(vec![TypeSignature::Any(1), TypeSignature::Any(2)], Volatility::Stable),
        values: values.into_iter().collect(),
    })
}

/// A text function whose answer, for every object Bowman has, is NULL.
fn no_text(name: &'static str, arities: &[usize]) -> ScalarUDF {
    #[derive(Debug, PartialEq, Eq, Hash)]
    struct NoText(&'static str, Signature);
    impl ScalarUDFImpl for NoText {
        fn name(&self) -> &str {
            self.0
        }
        fn signature(&self) -> &Signature {
            &self.1
        }
        fn return_type(&self, _: &[DataType]) -> Result<DataType> {
            Ok(DataType::Utf8)
        }
        fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
            Ok(match args.args.iter().find_map(|a| if let ColumnarValue::Array(a) = a { Some(a.len()) } else { None }) {
                Some(rows) => ColumnarValue::Array(new_null_array(&DataType::Utf8, rows)),
                None => ColumnarValue::Scalar(ScalarValue::Utf8(None)),
            })
        }
    }
    let signatures = arities.iter().map(|n| TypeSignature::Any(*n)).collect();
    ScalarUDF::new_from_impl(NoText(name, Signature::one_of(signatures, Volatility::Stable)))
}

/// `_pg_expandarray(a)`: PostgreSQL's set-returning function of `(x, n)` records, one per
/// element with its 1-based index. Here it returns them as a list of structs; the catalog-query
/// rewrite wraps the call in `unnest`, which makes the rows (zipped with other set-returning
/// calls of the select list, as PostgreSQL does).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ExpandArray {
    signature: Signature,
}

impl ExpandArray {
    fn new() -> Self {
        ExpandArray { signature: Signature::any(1, Volatility::Immutable) }
    }

    fn element_fields(element: &DataType) -> Fields {
        Fields::from(vec![Field::new("x", element.clone(), true), Field::new("n", DataType::Int32, false)])
    }
}

impl ScalarUDFImpl for ExpandArray {
    fn name(&self) -> &str {
        "_pg_expandarray"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match args.first() {
            Some(DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _)) => {
                Ok(DataType::new_list(DataType::Struct(Self::element_fields(f.data_type())), true))
            }
            Some(DataType::Null) => Ok(DataType::new_list(DataType::Struct(Self::element_fields(&DataType::Int32)), true)),
            Some(other) => plan_err!("_pg_expandarray takes an array, not {other}"),
            None => plan_err!("_pg_expandarray takes an array"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else { return exec_err!("_pg_expandarray takes one argument") };
        let DataType::List(out_field) = args.return_field.data_type() else {
            return exec_err!("_pg_expandarray returns a list");
        };
        let DataType::Struct(fields) = out_field.data_type() else { return exec_err!("_pg_expandarray returns structs") };
        let (array, scalar) = match arg {
            ColumnarValue::Array(a) => (a.clone(), false),
            ColumnarValue::Scalar(s) => (s.to_array()?, true),
        };
        let lists: ArrayRef = match array.data_type() {
            DataType::Null => new_null_array(&DataType::new_list(fields[0].data_type().clone(), true), array.len()),
            _ => datafusion::arrow::compute::cast(&array, &DataType::new_list(fields[0].data_type().clone(), true))?,
        };
        let lists = lists.as_list::<i32>();
        let values = lists.values().clone();
        let mut positions = vec![0i32; values.len()];
        let offsets = lists.value_offsets();
        for i in 0..lists.len() {
            let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
            for (n, slot) in positions[start..end].iter_mut().enumerate() {
                *slot = i32::try_from(n + 1).unwrap_or(i32::MAX);
            }
        }
        let records = StructArray::try_new(fields.clone(), vec![values, Arc::new(Int32Array::from(positions))], None)?;
        let out = ListArray::try_new(out_field.clone(), lists.offsets().clone(), Arc::new(records), lists.nulls().cloned())?;
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(Arc::new(out))
        })
    }
}
