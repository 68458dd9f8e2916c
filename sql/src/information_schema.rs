//! `information_schema` as PostgreSQL clients read it: DataFusion's tables, except `columns`,
//! which names types as PostgreSQL does (`integer`, `text`, `timestamp without time zone`,
//! `ARRAY`, ...) with the matching `udt_name` (`int4`, `text`, `_int8`), precision, scale and
//! lengths, instead of Arrow's names (`Int32`, `Utf8`). SQLAlchemy, DBeaver, Metabase and dbt
//! compare these names.
//!
//! DataFusion answers `information_schema` itself when its `information_schema` option is on,
//! before any catalog is asked, so Bowman turns the option off and registers this schema in its
//! catalog instead; tables other than `columns` are DataFusion's own.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int32Builder, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::information_schema::{INFORMATION_SCHEMA, InformationSchemaProvider};
use datafusion::catalog::{CatalogProviderList, SchemaProvider, Session, TableFunction, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

/// The `information_schema` schema of one session.
#[derive(Debug)]
pub(crate) struct InformationSchema {
    /// The session's catalogs; weak because this schema is itself registered in one of them.
    catalogs: Weak<dyn CatalogProviderList>,
    /// Bowman's catalog: column types of Bowman tables come from their stored definitions, as
    /// pg_catalog's do, without opening the table (which could reach S3 or a remote database).
    catalog: Arc<bowman_catalog::Catalog>,
    table_functions: HashMap<String, Arc<TableFunction>>,
}

impl InformationSchema {
    pub(crate) fn new(
        catalogs: &Arc<dyn CatalogProviderList>,
        catalog: Arc<bowman_catalog::Catalog>,
        table_functions: HashMap<String, Arc<TableFunction>>,
    ) -> Self {
        InformationSchema { catalogs: Arc::downgrade(catalogs), catalog, table_functions }
    }

    fn catalogs(&self) -> Result<Arc<dyn CatalogProviderList>> {
        self.catalogs.upgrade().ok_or_else(|| DataFusionError::Internal("the session's catalogs are gone".into()))
    }

    fn datafusion(&self) -> Result<InformationSchemaProvider> {
        Ok(InformationSchemaProvider::new(self.catalogs()?).with_table_functions(self.table_functions.clone()))
    }
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.datafusion().map(|d| d.table_names()).unwrap_or_default();
        names.push("table_privileges".to_string());
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if name.eq_ignore_ascii_case("columns") {
            return Ok(Some(Arc::new(Columns { catalogs: self.catalogs.clone(), catalog: self.catalog.clone(), schema: columns_schema() })));
        }
        if name.eq_ignore_ascii_case("table_privileges") {
            return crate::privileges::table_privileges(&self.catalog.snapshot()).map(Some);
        }
        self.datafusion()?.table(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case("table_privileges") || self.datafusion().is_ok_and(|d| d.table_exist(name))
    }
}

/// `information_schema.columns`, built when scanned: Bowman tables from their stored
/// definitions (the same nullability and types as pg_attribute), other tables (pg_catalog, views)
/// from their schemas.
#[derive(Debug)]
struct Columns {
    catalogs: Weak<dyn CatalogProviderList>,
    catalog: Arc<bowman_catalog::Catalog>,
    schema: SchemaRef,
}

/// PostgreSQL's columns of `information_schema.columns`, in its order (names are
/// `sql_identifier`s and numbers `cardinal_number`s there: text and int4 here).
const TEXT_COLUMNS_BEFORE_NUMBERS: &[&str] = &["table_catalog", "table_schema", "table_name", "column_name"];
const COLUMNS: &[(&str, DataType)] = &[
    ("ordinal_position", DataType::Int32),
    ("column_default", DataType::Utf8),
    ("is_nullable", DataType::Utf8),
    ("data_type", DataType::Utf8),
    ("character_maximum_length", DataType::Int32),
    ("character_octet_length", DataType::Int32),
    ("numeric_precision", DataType::Int32),
    ("numeric_precision_radix", DataType::Int32),
    ("numeric_scale", DataType::Int32),
    ("datetime_precision", DataType::Int32),
    ("interval_type", DataType::Utf8),
    ("interval_precision", DataType::Int32),
    ("character_set_catalog", DataType::Utf8),
    ("character_set_schema", DataType::Utf8),
    ("character_set_name", DataType::Utf8),
    ("collation_catalog", DataType::Utf8),
    ("collation_schema", DataType::Utf8),
    ("collation_name", DataType::Utf8),
    ("domain_catalog", DataType::Utf8),
    ("domain_schema", DataType::Utf8),
    ("domain_name", DataType::Utf8),
    ("udt_catalog", DataType::Utf8),
    ("udt_schema", DataType::Utf8),
    ("udt_name", DataType::Utf8),
    ("scope_catalog", DataType::Utf8),
    ("scope_schema", DataType::Utf8),
    ("scope_name", DataType::Utf8),
    ("maximum_cardinality", DataType::Int32),
    ("dtd_identifier", DataType::Utf8),
    ("is_self_referencing", DataType::Utf8),
    ("is_identity", DataType::Utf8),
    ("identity_generation", DataType::Utf8),
    ("identity_start", DataType::Utf8),
    ("identity_increment", DataType::Utf8),
    ("identity_maximum", DataType::Utf8),
    ("identity_minimum", DataType::Utf8),
    ("identity_cycle", DataType::Utf8),
    ("is_generated", DataType::Utf8),
    ("generation_expression", DataType::Utf8),
    ("is_updatable", DataType::Utf8),
];

fn columns_schema() -> SchemaRef {
    let mut fields: Vec<Field> = TEXT_COLUMNS_BEFORE_NUMBERS.iter().map(|n| Field::new(*n, DataType::Utf8, false)).collect();
    fields.extend(COLUMNS.iter().map(|(n, t)| Field::new(*n, t.clone(), true)));
    Arc::new(Schema::new(fields))
}

/// How PostgreSQL's information_schema describes one type.
#[derive(Debug, Default, PartialEq, Eq)]
struct PgType {
    data_type: String,
    udt_name: String,
    character_maximum_length: Option<i32>,
    character_octet_length: Option<i32>,
    numeric_precision: Option<i32>,
    numeric_precision_radix: Option<i32>,
    numeric_scale: Option<i32>,
    datetime_precision: Option<i32>,
    /// For arrays: the element type's `data_type` (PostgreSQL keeps it in element_types).
    dtd_identifier: Option<String>,
}

impl PgType {
    fn named(data_type: &str, udt_name: &str) -> Self {
        PgType { data_type: data_type.into(), udt_name: udt_name.into(), ..Default::default() }
    }

    fn binary_number(data_type: &str, udt_name: &str, precision: i32, integer: bool) -> Self {
        PgType {
            numeric_precision: Some(precision),
            numeric_precision_radix: Some(2),
            numeric_scale: integer.then_some(0),
            ..PgType::named(data_type, udt_name)
        }
    }

    fn decimal(precision: u8, scale: i8) -> Self {
        PgType {
            numeric_precision: Some(i32::from(precision)),
            numeric_precision_radix: Some(10),
            numeric_scale: Some(i32::from(scale)),
            ..PgType::named("numeric", "numeric")
        }
    }

    fn datetime(data_type: &str, udt_name: &str, precision: i32) -> Self {
        PgType { datetime_precision: Some(precision), ..PgType::named(data_type, udt_name) }
    }
}

/// PostgreSQL's description of the type Bowman sends for `t` over pgwire (the same mapping as
/// the RowDescription OIDs: Int8 and Int16 are int2, UInt64 is numeric, strings are text).
fn pg_type(t: &DataType) -> PgType {
    fn fraction_digits(unit: &TimeUnit) -> i32 {
        match unit {
            TimeUnit::Second => 0,
            TimeUnit::Millisecond => 3,
            TimeUnit::Microsecond | TimeUnit::Nanosecond => 6,
        }
    }
    match t {
        DataType::Boolean => PgType::named("boolean", "bool"),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => PgType::binary_number("smallint", "int2", 16, true),
        DataType::Int32 | DataType::UInt16 => PgType::binary_number("integer", "int4", 32, true),
        DataType::Int64 | DataType::UInt32 => PgType::binary_number("bigint", "int8", 64, true),
        DataType::UInt64 => PgType::decimal(20, 0),
        DataType::Float16 | DataType::Float32 => PgType::binary_number("real", "float4", 24, false),
        DataType::Float64 => PgType::binary_number("double precision", "float8", 53, false),
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            PgType::decimal(*p, *s)
        }
        // PostgreSQL reports text's octet length as its largest value (1 GB).
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            PgType { character_octet_length: Some(1_073_741_824), ..PgType::named("text", "text") }
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            PgType::named("bytea", "bytea")
        }
        DataType::Date32 | DataType::Date64 => PgType::datetime("date", "date", 0),
        DataType::Timestamp(unit, None) => PgType::datetime("timestamp without time zone", "timestamp", fraction_digits(unit)),
        DataType::Timestamp(unit, Some(_)) => PgType::datetime("timestamp with time zone", "timestamptz", fraction_digits(unit)),
        DataType::Time32(unit) | DataType::Time64(unit) => PgType::datetime("time without time zone", "time", fraction_digits(unit)),
        DataType::Interval(_) | DataType::Duration(_) => PgType::datetime("interval", "interval", 6),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) | DataType::ListView(f) | DataType::LargeListView(f) => {
            let element = pg_type(f.data_type());
            PgType { dtd_identifier: Some(element.data_type.clone()), ..PgType::named("ARRAY", &format!("_{}", element.udt_name)) }
        }
        DataType::Dictionary(_, value) => pg_type(value),
        DataType::RunEndEncoded(_, value) => pg_type(value.data_type()),
        // Structs, maps and unions have no PostgreSQL type of their own: a record.
        DataType::Struct(_) | DataType::Map(..) | DataType::Union(..) => PgType::named("USER-DEFINED", "record"),
        DataType::Null => PgType::named("unknown", "unknown"),
    }
}

/// Equality filters on the name columns (`WHERE table_schema = 'x' AND table_name = 'y'`, as
/// every client writes it), so that a scan opens only the tables asked for.
#[derive(Debug, Default)]
struct Wanted {
    catalog: Option<String>,
    schema: Option<String>,
    table: Option<String>,
}

impl Wanted {
    fn from_filters(filters: &[Expr]) -> Self {
        let mut wanted = Wanted::default();
        for f in filters {
            wanted.add(f);
        }
        wanted
    }

    fn add(&mut self, e: &Expr) {
        let Expr::BinaryExpr(b) = e else { return };
        match b.op {
            Operator::And => {
                self.add(&b.left);
                self.add(&b.right);
            }
            Operator::Eq => {
                let (column, value) = match (b.left.as_ref(), b.right.as_ref()) {
                    (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c)) => (c, v),
                    _ => return,
                };
                let value = match value {
                    ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => s.clone(),
                    _ => return,
                };
                match column.name.as_str() {
                    "table_catalog" => self.catalog = Some(value),
                    "table_schema" => self.schema = Some(value),
                    "table_name" => self.table = Some(value),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn admits(wanted: &Option<String>, name: &str) -> bool {
        wanted.as_deref().is_none_or(|w| w == name)
    }
}

impl Columns {
    async fn batch(&self, wanted: &Wanted) -> Result<RecordBatch> {
        let catalogs = self.catalogs.upgrade().ok_or_else(|| DataFusionError::Internal("the session's catalogs are gone".into()))?;
        let mut names: [StringBuilder; 4] = Default::default();
        let mut ints: Vec<Int32Builder> = Vec::new();
        let mut texts: Vec<StringBuilder> = Vec::new();
        for (_, t) in COLUMNS {
            match t {
                DataType::Int32 => ints.push(Int32Builder::new()),
                _ => texts.push(StringBuilder::new()),
            }
        }
        let mut rows = Vec::new();
        let snapshot = self.catalog.snapshot();
        for catalog_name in catalogs.catalog_names() {
            if !Wanted::admits(&wanted.catalog, &catalog_name) {
                continue;
            }
            let Some(catalog) = catalogs.catalog(&catalog_name) else { continue };
            for schema_name in catalog.schema_names() {
                if schema_name == INFORMATION_SCHEMA || !Wanted::admits(&wanted.schema, &schema_name) {
                    continue;
                }
                let Some(schema) = catalog.schema(&schema_name) else { continue };
                let tables = match &wanted.table {
                    Some(t) => vec![t.clone()],
                    None => schema.table_names(),
                };
                for table_name in tables {
                    let stored = match snapshot.table(&schema_name, &table_name) {
                        Some(def) if !def.columns.is_empty() && catalog_name == crate::engine::CATALOG_NAME => {
                            crate::types::table_fields(def).ok()
                        }
                        _ => None,
                    };
                    let fields: Vec<datafusion::arrow::datatypes::FieldRef> = match stored {
                        Some(fields) => fields.into_iter().map(Arc::new).collect(),
                        None => match schema.table(&table_name).await? {
                            Some(table) => table.schema().fields().iter().cloned().collect(),
                            None => continue,
                        },
                    };
                    for (i, field) in fields.into_iter().enumerate() {
                        rows.push((catalog_name.clone(), schema_name.clone(), table_name.clone(), i, field));
                    }
                }
            }
        }
        for (catalog_name, schema_name, table_name, i, field) in &rows {
            names[0].append_value(catalog_name);
            names[1].append_value(schema_name);
            names[2].append_value(table_name);
            names[3].append_value(field.name());
            let t = pg_type(field.data_type());
            let position = i32::try_from(*i + 1).unwrap_or(i32::MAX);
            let (mut n, mut s) = (0, 0);
            for (column, data_type) in COLUMNS {
                if *data_type == DataType::Int32 {
                    let v = match *column {
                        "ordinal_position" => Some(position),
                        "character_maximum_length" => t.character_maximum_length,
                        "character_octet_length" => t.character_octet_length,
                        "numeric_precision" => t.numeric_precision,
                        "numeric_precision_radix" => t.numeric_precision_radix,
                        "numeric_scale" => t.numeric_scale,
                        "datetime_precision" => t.datetime_precision,
                        _ => None,
                    };
                    ints[n].append_option(v);
                    n += 1;
                } else {
                    let v: Option<String> = match *column {
                        "is_nullable" => Some(if field.is_nullable() { "YES" } else { "NO" }.into()),
                        "data_type" => Some(t.data_type.clone()),
                        "udt_catalog" => Some(catalog_name.clone()),
                        "udt_schema" => Some("pg_catalog".into()),
                        "udt_name" => Some(t.udt_name.clone()),
                        "dtd_identifier" => Some(t.dtd_identifier.clone().unwrap_or_else(|| position.to_string())),
                        "is_self_referencing" | "is_identity" | "identity_cycle" => Some("NO".into()),
                        "is_generated" => Some("NEVER".into()),
                        "is_updatable" => Some("YES".into()),
                        _ => None,
                    };
                    texts[s].append_option(v);
                    s += 1;
                }
            }
        }
        let mut arrays: Vec<ArrayRef> = names.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
        let (mut n, mut s) = (0, 0);
        for (_, t) in COLUMNS {
            if *t == DataType::Int32 {
                arrays.push(Arc::new(ints[n].finish()));
                n += 1;
            } else {
                arrays.push(Arc::new(texts[s].finish()));
                s += 1;
            }
        }
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}

#[async_trait]
impl TableProvider for Columns {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        // The filters narrow which tables are opened; DataFusion still applies them.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batch = self.batch(&Wanted::from_filters(filters)).await?;
        let table = datafusion::datasource::MemTable::try_new(self.schema.clone(), vec![vec![batch]])?;
        table.scan(state, projection, &[], limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_names_for_arrow_types() {
        let names = |t: DataType| {
            let p = pg_type(&t);
            (p.data_type, p.udt_name, p.numeric_precision, p.numeric_scale)
        };
        assert_eq!(names(DataType::Int32), ("integer".into(), "int4".into(), Some(32), Some(0)));
        assert_eq!(names(DataType::Int64), ("bigint".into(), "int8".into(), Some(64), Some(0)));
        assert_eq!(names(DataType::Utf8), ("text".into(), "text".into(), None, None));
        assert_eq!(names(DataType::Float64), ("double precision".into(), "float8".into(), Some(53), None));
        assert_eq!(names(DataType::Decimal128(10, 2)), ("numeric".into(), "numeric".into(), Some(10), Some(2)));
        assert_eq!(names(DataType::Timestamp(TimeUnit::Microsecond, None)).0, "timestamp without time zone");
        assert_eq!(names(DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))).1, "timestamptz");
        assert_eq!(names(DataType::new_list(DataType::Int64, true)), ("ARRAY".into(), "_int8".into(), None, None));
    }
}
