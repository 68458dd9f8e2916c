//! Spark SQL type names <-> Arrow types.
//!
//! The catalog stores column types as canonical Spark SQL text (`INT`, `STRING`,
//! `DECIMAL(10,2)`, `ARRAY<STRING>`, `STRUCT<a: INT, b: STRING>`, `MAP<STRING, BIGINT>`), so the
//! stored form is readable, survives Arrow upgrades and is exactly what `SHOW CREATE TABLE` and
//! `DESCRIBE` print. PostgreSQL spellings that tools send (`TEXT`, `INT4`, `DOUBLE PRECISION`,
//! `TIMESTAMP WITH TIME ZONE`, `BYTEA`, `VARCHAR(n)`) are accepted too.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};

use crate::error::{BowmanError, Result};

/// A stored table's columns as Arrow fields (in table order, partition columns included).
pub fn table_fields(def: &bowman_catalog::TableDef) -> Result<Vec<datafusion::arrow::datatypes::Field>> {
    def.columns
        .iter()
        .map(|c| {
            let (t, _) = parse_type(&c.data_type).map_err(|e| {
                crate::error::BowmanError::InvalidDefinition(format!("column {} of {}: {}", c.name, def.qualified_name(), e.message()))
            })?;
            Ok(datafusion::arrow::datatypes::Field::new(&c.name, t, c.nullable))
        })
        .collect()
}

/// Parse a type written in SQL. Returns the Arrow type and the canonical Spark text.
pub fn parse_type(text: &str) -> Result<(DataType, String)> {
    let mut p = TypeParser { tokens: tokenize(text), pos: 0, text, depth: 0 };
    let t = p.parse()?;
    if p.pos != p.tokens.len() {
        return Err(p.error("unexpected text after the type"));
    }
    let canonical = type_name(&t)?;
    Ok((t, canonical))
}

/// The canonical Spark SQL name of an Arrow type, for types Bowman can store.
pub fn type_name(t: &DataType) -> Result<String> {
    Ok(match t {
        DataType::Null => "STRING".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 | DataType::UInt8 => "SMALLINT".into(),
        DataType::Int32 | DataType::UInt16 => "INT".into(),
        DataType::Int64 | DataType::UInt32 => "BIGINT".into(),
        DataType::UInt64 => "DECIMAL(20,0)".into(),
        DataType::Float16 | DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s) => {
            format!("DECIMAL({p},{s})")
        }
        DataType::Decimal256(p, s) => format!("DECIMAL({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "STRING".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            "BINARY".into()
        }
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP_LTZ".into(),
        DataType::Time32(_) | DataType::Time64(_) => "TIME".into(),
        DataType::List(f) | DataType::LargeList(f) | DataType::ListView(f) | DataType::LargeListView(f) => {
            format!("ARRAY<{}>", type_name(f.data_type())?)
        }
        DataType::FixedSizeList(f, _) => format!("ARRAY<{}>", type_name(f.data_type())?),
        DataType::Struct(fields) => {
            let parts = fields
                .iter()
                .map(|f| Ok(format!("{}: {}", quote_field(f.name()), type_name(f.data_type())?)))
                .collect::<Result<Vec<_>>>()?;
            format!("STRUCT<{}>", parts.join(", "))
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                format!("MAP<{}, {}>", type_name(kv[0].data_type())?, type_name(kv[1].data_type())?)
            }
            other => return Err(BowmanError::NotSupported(format!("map entries of type {other}"))),
        },
        DataType::Dictionary(_, v) => type_name(v)?,
        other => {
            return Err(BowmanError::NotSupported(format!(
                "columns of Arrow type {other} cannot be stored in a table; cast them to a SQL type first"
            )));
        }
    })
}

fn quote_field(name: &str) -> String {
    // A bare name is a word: it starts with a letter or `_` (`6` would read back as a number).
    let bare = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if bare {
        name.to_string()
    } else {
        format!("`{}`", name.replace('`', "``"))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Num(u64),
    Sym(char),
}

fn tokenize(text: &str) -> Vec<Tok> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            out.push(Tok::Num(s.parse().unwrap_or(u64::MAX)));
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else if c == '`' || c == '"' {
            // quoted field name
            let quote = c;
            i += 1;
            let mut s = String::new();
            while i < chars.len() {
                if chars[i] == quote {
                    if i + 1 < chars.len() && chars[i + 1] == quote {
                        s.push(quote);
                        i += 2;
                        continue;
                    }
                    break;
                }
                s.push(chars[i]);
                i += 1;
            }
            i += 1;
            out.push(Tok::Word(format!("\u{1}{s}")));
        } else {
            out.push(Tok::Sym(c));
            i += 1;
        }
    }
    out
}

struct TypeParser<'a> {
    tokens: Vec<Tok>,
    pos: usize,
    text: &'a str,
    /// ARRAY/MAP/STRUCT nesting so far.
    depth: usize,
}

/// How deeply ARRAY, MAP and STRUCT types may nest (Arrow types, their Display and their
/// Parquet schemas are all recursive).
pub const MAX_TYPE_DEPTH: usize = 100;

impl TypeParser<'_> {
    fn error(&self, what: &str) -> BowmanError {
        BowmanError::Syntax(format!("invalid type '{}': {what}", self.text.trim()))
    }

    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn word(&mut self) -> Option<String> {
        match self.tokens.get(self.pos) {
            Some(Tok::Word(w)) => {
                self.pos += 1;
                Some(w.clone())
            }
            _ => None,
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if let Some(Tok::Word(x)) = self.peek() {
            if x.eq_ignore_ascii_case(w) {
                self.pos += 1;
                return true;
            }
        }
        false
    }

    fn eat_sym(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Sym(c)) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn expect_sym(&mut self, c: char) -> Result<()> {
        if self.eat_sym(c) { Ok(()) } else { Err(self.error(&format!("expected '{c}'"))) }
    }

    fn num(&mut self) -> Result<u64> {
        match self.tokens.get(self.pos) {
            Some(Tok::Num(n)) => {
                self.pos += 1;
                Ok(*n)
            }
            _ => Err(self.error("expected a number")),
        }
    }

    /// Optional `(n)` or `(p, s)` after a type name.
    fn params(&mut self) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        if self.eat_sym('(') {
            out.push(self.num()?);
            while self.eat_sym(',') {
                out.push(self.num()?);
            }
            self.expect_sym(')')?;
        }
        Ok(out)
    }

    fn parse(&mut self) -> Result<DataType> {
        if self.depth >= MAX_TYPE_DEPTH {
            return Err(BowmanError::TooComplex(format!(
                "type '{}' nests ARRAY, MAP or STRUCT more than {MAX_TYPE_DEPTH} deep",
                crate::limits::excerpt(self.text.trim())
            )));
        }
        self.depth += 1;
        let t = self.parse_one();
        self.depth -= 1;
        t
    }

    fn parse_one(&mut self) -> Result<DataType> {
        let name = self.word().ok_or_else(|| self.error("expected a type name"))?;
        let upper = name.to_ascii_uppercase();
        let t = match upper.as_str() {
            "STRING" | "TEXT" | "VARCHAR" | "CHAR" | "CHARACTER" | "BPCHAR" | "NVARCHAR" => {
                if upper == "CHARACTER" {
                    self.eat_word("VARYING");
                }
                self.params()?;
                DataType::Utf8
            }
            "BOOLEAN" | "BOOL" => DataType::Boolean,
            "TINYINT" | "BYTE" => DataType::Int8,
            "SMALLINT" | "SHORT" | "INT2" => DataType::Int16,
            "INT" | "INTEGER" | "INT4" => DataType::Int32,
            "BIGINT" | "LONG" | "INT8" => DataType::Int64,
            "FLOAT" | "REAL" | "FLOAT4" => {
                // FLOAT(p) with p > 24 is double precision in PostgreSQL.
                let p = self.params()?;
                if p.first().is_some_and(|p| *p > 24) { DataType::Float64 } else { DataType::Float32 }
            }
            "DOUBLE" | "FLOAT8" => {
                self.eat_word("PRECISION");
                DataType::Float64
            }
            "DECIMAL" | "DEC" | "NUMERIC" => {
                let p = self.params()?;
                let precision = p.first().copied().unwrap_or(10);
                let scale = p.get(1).copied().unwrap_or(0);
                if precision == 0 || precision > 38 || scale > precision {
                    return Err(self.error("DECIMAL precision must be 1..38 and scale at most the precision"));
                }
                DataType::Decimal128(precision as u8, scale as i8)
            }
            "DATE" => DataType::Date32,
            "TIMESTAMP" | "DATETIME" => {
                self.params()?;
                if self.eat_word("WITH") {
                    self.eat_word("TIME");
                    self.eat_word("ZONE");
                    DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
                } else {
                    if self.eat_word("WITHOUT") {
                        self.eat_word("TIME");
                        self.eat_word("ZONE");
                    }
                    DataType::Timestamp(TimeUnit::Microsecond, None)
                }
            }
            "TIMESTAMP_NTZ" => DataType::Timestamp(TimeUnit::Microsecond, None),
            "TIMESTAMP_LTZ" | "TIMESTAMPTZ" => DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
            "TIME" => {
                self.params()?;
                if self.eat_word("WITHOUT") {
                    self.eat_word("TIME");
                    self.eat_word("ZONE");
                }
                DataType::Time64(TimeUnit::Microsecond)
            }
            "BINARY" | "BYTEA" | "VARBINARY" | "BLOB" => DataType::Binary,
            "ARRAY" => {
                self.expect_sym('<')?;
                let inner = self.parse()?;
                self.expect_sym('>')?;
                DataType::List(Arc::new(Field::new("element", inner, true)))
            }
            "MAP" => {
                self.expect_sym('<')?;
                let k = self.parse()?;
                self.expect_sym(',')?;
                let v = self.parse()?;
                self.expect_sym('>')?;
                let entries = Field::new(
                    "key_value",
                    DataType::Struct(Fields::from(vec![Field::new("key", k, false), Field::new("value", v, true)])),
                    false,
                );
                DataType::Map(Arc::new(entries), false)
            }
            "STRUCT" => {
                self.expect_sym('<')?;
                let mut fields = Vec::new();
                if !self.eat_sym('>') {
                    loop {
                        let raw = self.word().ok_or_else(|| self.error("expected a field name"))?;
                        let name = raw.strip_prefix('\u{1}').map(str::to_string).unwrap_or(raw);
                        self.eat_sym(':');
                        let t = self.parse()?;
                        fields.push(Field::new(name, t, true));
                        if self.eat_sym(',') {
                            continue;
                        }
                        self.expect_sym('>')?;
                        break;
                    }
                }
                DataType::Struct(Fields::from(fields))
            }
            _ => return Err(BowmanError::UndefinedType(name.trim_start_matches('\u{1}').to_string())),
        };
        // PostgreSQL array suffix: INT[]
        if self.eat_sym('[') {
            self.expect_sym(']')?;
            return Ok(DataType::List(Arc::new(Field::new("element", t, true))));
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        parse_type(s).unwrap().1
    }

    #[test]
    fn field_names_that_start_with_a_digit_are_quoted_and_read_back() {
        // Found by the parse_type fuzz target: `6` was printed bare and read back as a number.
        let text = "STRUCT<`x y `: ARRAY<MAP<INT, STRUCT<\"6\": DATE>>>>";
        let (t, canonical) = parse_type(text).unwrap();
        assert_eq!(canonical, "STRUCT<`x y `: ARRAY<MAP<INT, STRUCT<`6`: DATE>>>>");
        assert_eq!(parse_type(&canonical).unwrap(), (t, canonical.clone()));
        assert_eq!(canon("STRUCT<_a1: INT, b: STRING>"), "STRUCT<_a1: INT, b: STRING>");
    }

    #[test]
    fn spark_and_postgres_names() {
        assert_eq!(canon("int"), "INT");
        assert_eq!(canon("Text"), "STRING");
        assert_eq!(canon("varchar(20)"), "STRING");
        assert_eq!(canon("double precision"), "DOUBLE");
        assert_eq!(canon("decimal(10, 2)"), "DECIMAL(10,2)");
        assert_eq!(canon("numeric"), "DECIMAL(10,0)");
        assert_eq!(canon("timestamp with time zone"), "TIMESTAMP_LTZ");
        assert_eq!(canon("timestamp"), "TIMESTAMP");
        assert_eq!(canon("array < array<int> >"), "ARRAY<ARRAY<INT>>");
        assert_eq!(canon("map<string,bigint>"), "MAP<STRING, BIGINT>");
        assert_eq!(canon("struct<a:int, `b c`: string>"), "STRUCT<a: INT, `b c`: STRING>");
        assert_eq!(canon("int[]"), "ARRAY<INT>");
    }

    #[test]
    fn canonical_text_round_trips() {
        for s in ["INT", "STRING", "DECIMAL(38,10)", "ARRAY<STRUCT<x: DOUBLE, y: DOUBLE>>", "MAP<STRING, ARRAY<INT>>", "TIMESTAMP_LTZ", "DATE", "BINARY"] {
            let (t, c) = parse_type(s).unwrap();
            assert_eq!(c, s);
            assert_eq!(parse_type(&c).unwrap().0, t);
        }
    }

    #[test]
    fn bad_types_are_errors() {
        assert!(matches!(parse_type("blob2"), Err(BowmanError::UndefinedType(_))));
        assert!(parse_type("decimal(50,2)").is_err());
        assert!(parse_type("array<int").is_err());
    }
}
