//! `pg_catalog` for the clients that introspect on connect (psql's `\d`, SQLAlchemy, JDBC's
//! `DatabaseMetaData`, DBeaver, Metabase, dbt), from the `datafusion-pg-catalog` crate.
//!
//! Bowman databases are PostgreSQL schemas of the one database a client connects to. The
//! crate's tables read Bowman's catalog through [`BowmanCatalogInfo`], which answers from the
//! catalog snapshot (column types from the stored definitions) instead of opening every table
//! through its connector: listing columns must not reach S3, a Delta log or a remote database.
//! One provider serves every session so that OIDs, assigned as objects are first seen, stay
//! the same for the life of the server.

use std::sync::Arc;

use async_trait::async_trait;
use bowman_catalog::Catalog;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::catalog_info::CatalogInfo;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::{self as pg, PgCatalogSchemaProvider, PgCatalogStaticTables};


/// The crate's pg_catalog schema.
type CratePgCatalog = PgCatalogSchemaProvider<BowmanCatalogInfo, EmptyContextProvider>;

/// The pg_catalog schema every session shares: the crate's, with the tables it types in ways
/// client queries cannot use replaced.
#[derive(Debug)]
pub(crate) struct PgCatalog {
    inner: Arc<CratePgCatalog>,
    /// `pg_index` with `indkey` (int2vector) and the oidvector columns as arrays: the crate
    /// stores them as text, so SQLAlchemy's `unnest(indkey)` cannot plan. Bowman tables have no
    /// indexes, so the table is empty.
    pg_index: Arc<dyn datafusion::catalog::TableProvider>,
    /// For `pg_tables` and `pg_views`, built from the catalog snapshot (the crate's pg_tables
    /// lists views as tables and its pg_views is empty).
    catalog: Arc<Catalog>,
}

#[async_trait]
impl datafusion::catalog::SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> datafusion::error::Result<Option<Arc<dyn datafusion::catalog::TableProvider>>> {
        if name.eq_ignore_ascii_case("pg_index") {
            return Ok(Some(self.pg_index.clone()));
        }
        if name.eq_ignore_ascii_case("pg_tables") || name.eq_ignore_ascii_case("pg_views") {
            return relations_view(&self.catalog.snapshot(), name.eq_ignore_ascii_case("pg_views")).map(Some);
        }
        let table = self.inner.table(name).await?;
        if name.eq_ignore_ascii_case("pg_class") {
            // The crate's pg_class lacks `reloptions` (text[]), which SQLAlchemy's index
            // reflection selects; Bowman relations have no storage options. `relacl` holds
            // each table's grants (psql's `\dp`).
            use datafusion::arrow::datatypes::DataType;
            let namespaces = self.inner.table("pg_namespace").await?;
            return Ok(match (table, namespaces) {
                (Some(t), Some(namespaces)) => {
                    let with_options = Arc::new(WithNullColumns::new(t, vec![Field::new("reloptions", DataType::new_list(DataType::Utf8, true), true)]));
                    Some(Arc::new(WithAcl::new(with_options, namespaces, self.catalog.clone())) as Arc<dyn datafusion::catalog::TableProvider>)
                }
                (t, _) => t,
            });
        }
        Ok(table)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

fn typed_pg_index(statics: &PgCatalogStaticTables) -> datafusion::error::Result<Arc<dyn datafusion::catalog::TableProvider>> {
    use datafusion::arrow::datatypes::DataType;
    let fields: Vec<Field> = statics
        .pg_index
        .schema()
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "indkey" | "indoption" => Field::new(f.name(), DataType::new_list(DataType::Int16, true), true),
            "indcollation" | "indclass" => Field::new(f.name(), DataType::new_list(DataType::Int32, true), true),
            _ => f.as_ref().clone(),
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    Ok(Arc::new(datafusion::datasource::MemTable::try_new(schema, vec![vec![]])?))
}

/// System schemas listed next to Bowman's databases (they hold no Bowman tables).
const SYSTEM_SCHEMAS: &[&str] = &["pg_catalog", "information_schema"];

/// A Bowman database's name as a PostgreSQL schema: the default database is `public`.
fn schema_name(database: &str) -> String {
    if database == bowman_catalog::DEFAULT_DATABASE { bowman_catalog::PUBLIC_SCHEMA.to_string() } else { database.to_string() }
}

/// `pg_tables` (tables only) or `pg_views` (views, with their query as `definition`) from the
/// catalog snapshot, with PostgreSQL's columns.
fn relations_view(
    snapshot: &bowman_catalog::CatalogState,
    views: bool,
) -> datafusion::error::Result<Arc<dyn datafusion::catalog::TableProvider>> {
    use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::DataType;
    let mut schemas = Vec::new();
    let mut names = Vec::new();
    let mut definitions = Vec::new();
    for (db, entry) in &snapshot.databases {
        if views {
            for v in entry.views.values() {
                schemas.push(schema_name(db));
                names.push(v.name.clone());
                definitions.push(v.query.clone());
            }
        } else {
            for t in entry.tables.keys() {
                schemas.push(schema_name(db));
                names.push(t.clone());
            }
        }
    }
    let n = names.len();
    let owners = StringArray::from(vec!["postgres"; n]);
    let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = if views {
        (
            vec![
                Field::new("schemaname", DataType::Utf8, true),
                Field::new("viewname", DataType::Utf8, true),
                Field::new("viewowner", DataType::Utf8, true),
                Field::new("definition", DataType::Utf8, true),
            ],
            vec![
                Arc::new(StringArray::from(schemas)),
                Arc::new(StringArray::from(names)),
                Arc::new(owners),
                Arc::new(StringArray::from(definitions)),
            ],
        )
    } else {
        let no = || Arc::new(BooleanArray::from(vec![false; n])) as ArrayRef;
        (
            vec![
                Field::new("schemaname", DataType::Utf8, true),
                Field::new("tablename", DataType::Utf8, true),
                Field::new("tableowner", DataType::Utf8, true),
                Field::new("tablespace", DataType::Utf8, true),
                Field::new("hasindexes", DataType::Boolean, true),
                Field::new("hasrules", DataType::Boolean, true),
                Field::new("hastriggers", DataType::Boolean, true),
                Field::new("rowsecurity", DataType::Boolean, true),
            ],
            vec![
                Arc::new(StringArray::from(schemas)),
                Arc::new(StringArray::from(names)),
                Arc::new(owners),
                Arc::new(StringArray::from(vec![None::<&str>; n])),
                no(),
                no(),
                no(),
                no(),
            ],
        )
    };
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(datafusion::datasource::MemTable::try_new(schema, vec![vec![batch]])?))
}

#[derive(Debug, Clone)]
pub(crate) struct BowmanCatalogInfo {
    catalog: Arc<Catalog>,
}

#[async_trait]
impl CatalogInfo for BowmanCatalogInfo {
    async fn catalog_names(&self) -> Result<Vec<String>, DataFusionError> {
        Ok(vec![crate::engine::CATALOG_NAME.to_string()])
    }

    async fn schema_names(&self, catalog_name: &str) -> Result<Option<Vec<String>>, DataFusionError> {
        if catalog_name != crate::engine::CATALOG_NAME {
            return Ok(None);
        }
        let mut names: Vec<String> = self.catalog.snapshot().databases.keys().map(|d| schema_name(d)).collect();
        names.extend(SYSTEM_SCHEMAS.iter().map(|s| s.to_string()));
        Ok(Some(names))
    }

    async fn table_names(&self, catalog_name: &str, schema_name: &str) -> Result<Option<Vec<String>>, DataFusionError> {
        if catalog_name != crate::engine::CATALOG_NAME {
            return Ok(None);
        }
        if SYSTEM_SCHEMAS.contains(&schema_name) {
            return Ok(Some(vec![]));
        }
        Ok(self.catalog.snapshot().database(schema_name).map(|d| d.tables.keys().chain(d.views.keys()).cloned().collect()))
    }

    async fn table_schema(
        &self,
        catalog_name: &str,
        schema_name: &str,
        table_name: &str,
    ) -> Result<Option<SchemaRef>, DataFusionError> {
        if catalog_name != crate::engine::CATALOG_NAME {
            return Ok(None);
        }
        let snapshot = self.catalog.snapshot();
        if let Some(view) = snapshot.view(schema_name, table_name) {
            let fields = view
                .columns
                .iter()
                .map(|c| crate::types::parse_type(&c.data_type).map(|(t, _)| Field::new(&c.name, t, true)))
                .collect::<crate::error::Result<Vec<_>>>()
                .map_err(|e| DataFusionError::Plan(e.message()))?;
            return Ok(Some(Arc::new(Schema::new(fields))));
        }
        let Some(def) = snapshot.table(schema_name, table_name) else { return Ok(None) };
        let fields = crate::types::table_fields(def).map_err(|e| DataFusionError::Plan(e.message()))?;
        Ok(Some(Arc::new(Schema::new(fields))))
    }

    async fn table_type(
        &self,
        catalog_name: &str,
        schema_name: &str,
        table_name: &str,
    ) -> Result<Option<TableType>, DataFusionError> {
        if catalog_name != crate::engine::CATALOG_NAME {
            return Ok(None);
        }
        let snapshot = self.catalog.snapshot();
        if snapshot.view(schema_name, table_name).is_some() {
            return Ok(Some(TableType::View));
        }
        Ok(snapshot.table(schema_name, table_name).map(|_| TableType::Base))
    }
}

/// What a session needs from pg_catalog, built once per engine: the schema (static tables such
/// as pg_type, and the OID cache) and the type names `to_regtype` resolves.
#[derive(Debug)]
pub(crate) struct PgCatalogState {
    schema: Arc<PgCatalog>,
    type_oids: Arc<std::collections::HashMap<String, i32>>,
    /// Function OID -> (result type, argument types), names as `format_type` prints them.
    functions: Arc<std::collections::HashMap<i32, (String, String)>>,
}

pub(crate) fn build(catalog: Arc<Catalog>) -> datafusion::error::Result<PgCatalogState> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{DataType, Int32Type, UInt32Type};
    let statics = Arc::new(PgCatalogStaticTables::try_new()?);
    let mut type_oids = std::collections::HashMap::new();
    for batch in statics.pg_type.data() {
        let (Some(names), Some(oids)) = (batch.column_by_name("typname"), batch.column_by_name("oid")) else { continue };
        let names = datafusion::arrow::compute::cast(names, &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        for i in 0..batch.num_rows() {
            if names.is_null(i) || oids.is_null(i) {
                continue;
            }
            let oid = match oids.data_type() {
                DataType::Int32 => oids.as_primitive::<Int32Type>().value(i),
                DataType::UInt32 => oids.as_primitive::<UInt32Type>().value(i) as i32,
                _ => continue,
            };
            type_oids.insert(names.value(i).to_string(), oid);
        }
    }
    let type_names: std::collections::HashMap<i32, String> = type_oids.iter().map(|(n, o)| (*o, n.clone())).collect();
    let type_name = |oid: &str| oid.trim().parse::<i32>().ok().and_then(|o| type_names.get(&o).cloned()).unwrap_or_else(|| oid.to_string());
    let mut functions = std::collections::HashMap::new();
    for batch in statics.pg_proc.data() {
        let (Some(oids), Some(ret), Some(args)) =
            (batch.column_by_name("oid"), batch.column_by_name("prorettype"), batch.column_by_name("proargtypes"))
        else {
            continue;
        };
        let oids = datafusion::arrow::compute::cast(oids, &DataType::Int32)?;
        let ret = datafusion::arrow::compute::cast(ret, &DataType::Utf8)?;
        let args = datafusion::arrow::compute::cast(args, &DataType::Utf8)?;
        let (oids, ret, args) = (oids.as_primitive::<Int32Type>(), ret.as_string::<i32>(), args.as_string::<i32>());
        for i in 0..batch.num_rows() {
            if oids.is_null(i) {
                continue;
            }
            let result = if ret.is_null(i) { String::new() } else { type_name(ret.value(i)) };
            let arguments = if args.is_null(i) {
                String::new()
            } else {
                args.value(i).split_whitespace().map(&type_name).collect::<Vec<_>>().join(", ")
            };
            functions.insert(oids.value(i), (result, arguments));
        }
    }
    let pg_index = typed_pg_index(&statics)?;
    let inner = Arc::new(PgCatalogSchemaProvider::try_new(BowmanCatalogInfo { catalog: catalog.clone() }, statics, EmptyContextProvider)?);
    let schema = Arc::new(PgCatalog { inner, pg_index, catalog });
    Ok(PgCatalogState { schema, type_oids: Arc::new(type_oids), functions: Arc::new(functions) })
}

/// `pg_get_function_result(oid)` / `pg_get_function_arguments(oid)` (psql's `\df`) from pg_proc.
fn function_signature(
    name: &str,
    functions: Arc<std::collections::HashMap<i32, (String, String)>>,
    result: bool,
) -> datafusion::logical_expr::ScalarUDF {
    use datafusion::arrow::array::{Array, AsArray, StringArray};
    use datafusion::arrow::datatypes::{DataType, Int32Type};
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    let lookup = move |oid: i32| functions.get(&oid).map(|(r, a)| if result { r.clone() } else { a.clone() });
    create_udf(
        name,
        vec![DataType::Int32],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            Ok(match &args[0] {
                ColumnarValue::Scalar(ScalarValue::Int32(v)) => ColumnarValue::Scalar(ScalarValue::Utf8(v.and_then(&lookup))),
                ColumnarValue::Scalar(_) => ColumnarValue::Scalar(ScalarValue::Utf8(None)),
                ColumnarValue::Array(a) => {
                    let a = datafusion::arrow::compute::cast(a, &DataType::Int32)?;
                    let a = a.as_primitive::<Int32Type>();
                    let out: StringArray = (0..a.len()).map(|i| if a.is_null(i) { None } else { lookup(a.value(i)) }).collect();
                    ColumnarValue::Array(Arc::new(out))
                }
            })
        }),
    )
}

/// `to_regtype(name)`: the type's OID, or NULL when there is no such type (psycopg and
/// SQLAlchemy probe for optional types such as hstore this way on connect).
fn to_regtype(type_oids: Arc<std::collections::HashMap<String, i32>>) -> datafusion::logical_expr::ScalarUDF {
    use datafusion::arrow::array::{Array, AsArray, Int32Array};
    use datafusion::arrow::datatypes::DataType;
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    let lookup = move |name: &str| -> Option<i32> {
        let name = name.trim().trim_matches('"');
        let name = name.strip_prefix("pg_catalog.").unwrap_or(name);
        let canonical = match name.to_ascii_lowercase().as_str() {
            "integer" | "int" => "int4".to_string(),
            "bigint" => "int8".to_string(),
            "smallint" => "int2".to_string(),
            "boolean" => "bool".to_string(),
            "real" => "float4".to_string(),
            "double precision" => "float8".to_string(),
            "character varying" => "varchar".to_string(),
            other if other.ends_with("[]") => format!("_{}", other.trim_end_matches("[]")),
            other => other.to_string(),
        };
        type_oids.get(&canonical).copied()
    };
    create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            Ok(match &args[0] {
                ColumnarValue::Scalar(ScalarValue::Utf8(v)) => {
                    ColumnarValue::Scalar(ScalarValue::Int32(v.as_deref().and_then(&lookup)))
                }
                ColumnarValue::Scalar(_) => ColumnarValue::Scalar(ScalarValue::Int32(None)),
                ColumnarValue::Array(a) => {
                    let a = datafusion::arrow::compute::cast(a, &DataType::Utf8)?;
                    let s = a.as_string::<i32>();
                    let out: Int32Array = (0..s.len()).map(|i| if s.is_null(i) { None } else { lookup(s.value(i)) }).collect();
                    ColumnarValue::Array(Arc::new(out))
                }
            })
        }),
    )
}

/// Give a session pg_catalog and the functions clients call with it. The list mirrors
/// `datafusion_pg_catalog::setup_pg_catalog`, which builds its own provider over DataFusion's
/// catalog list (opening every table to read its schema) and so cannot be used as is.
pub(crate) fn install(ctx: &SessionContext, state: &PgCatalogState) -> datafusion::error::Result<()> {
    use datafusion_pg_catalog::pg_catalog::{
        array_bounds_udf, format_type, generate_series_arg_coercion, has_privilege_udf, pg_get_expr_udf, quote_ident_udf,
    };
    ctx.catalog(crate::engine::CATALOG_NAME)
        .ok_or_else(|| DataFusionError::Internal("the bowman catalog is not registered".into()))?
        .register_schema("pg_catalog", state.schema.clone())?;
    ctx.register_udf(to_regtype(state.type_oids.clone()));
    ctx.register_udf(function_signature("pg_get_function_result", state.functions.clone(), true));
    ctx.register_udf(function_signature("pg_get_function_arguments", state.functions.clone(), false));
    ctx.register_udf(pg::create_current_schemas_udf());
    ctx.register_udf(pg::create_pg_get_userbyid_udf());
    for name in ["has_table_privilege", "has_schema_privilege", "has_database_privilege", "has_any_column_privilege"] {
        ctx.register_udf(has_privilege_udf::create_has_privilege_udf(name));
    }
    ctx.register_udf(pg::create_pg_table_is_visible());
    ctx.register_udf(format_type::create_format_type_udf());
    ctx.register_udf(pg::create_session_user_udf());
    ctx.register_udf(pg_get_expr_udf::create_pg_get_expr_udf());
    ctx.register_udf(pg::create_pg_get_partkeydef_udf());
    ctx.register_udf(pg::create_pg_relation_is_publishable_udf());
    ctx.register_udf(pg::create_pg_get_statisticsobjdef_columns_udf());
    ctx.register_udf(pg::create_pg_encoding_to_char_udf());
    ctx.register_udf(pg::create_pg_backend_pid_udf());
    ctx.register_udf(pg::create_pg_relation_size_udf());
    ctx.register_udf(pg::create_pg_total_relation_size_udf());
    ctx.register_udf(pg::create_pg_stat_get_numscans());
    ctx.register_udf(pg::create_pg_get_constraintdef());
    ctx.register_udf(pg::create_pg_get_partition_ancestors_udf());
    ctx.register_udf(quote_ident_udf::create_quote_ident_udf());
    ctx.register_udf(quote_ident_udf::create_parse_ident_udf());
    ctx.register_udf(array_bounds_udf::create_array_upper_udf());
    ctx.register_udf(array_bounds_udf::create_array_lower_udf());
    ctx.register_udf(no_index_definition());
    ctx.register_udf(always_visible("pg_function_is_visible"));
    ctx.register_udf(always_visible("pg_type_is_visible"));
    ctx.register_udf(always_visible("pg_collation_is_visible"));
    crate::pg_functions::register(ctx);
    generate_series_arg_coercion::CoerceIntArgsToBigInt::widen(ctx);
    Ok(())
}

/// `pg_get_indexdef(oid[, column, pretty])`: Bowman tables have no indexes, and PostgreSQL
/// answers NULL for an OID that is not an index.
fn no_index_definition() -> datafusion::logical_expr::ScalarUDF {
    use datafusion::arrow::array::new_null_array;
    use datafusion::arrow::datatypes::DataType;
    use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility};
    #[derive(Debug, PartialEq, Eq, Hash)]
    struct IndexDef(Signature);
    impl ScalarUDFImpl for IndexDef {
        fn name(&self) -> &str {
            "pg_get_indexdef"
        }
        fn signature(&self) -> &Signature {
            &self.0
        }
        fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
            Ok(DataType::Utf8)
        }
        fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::error::Result<ColumnarValue> {
            Ok(match args.args.first() {
                Some(ColumnarValue::Array(a)) => ColumnarValue::Array(new_null_array(&DataType::Utf8, a.len())),
                _ => ColumnarValue::Scalar(datafusion::common::ScalarValue::Utf8(None)),
            })
        }
    }
    datafusion::logical_expr::ScalarUDF::new_from_impl(IndexDef(Signature::one_of(
        vec![TypeSignature::Any(1), TypeSignature::Any(3)],
        Volatility::Stable,
    )))
}

/// `pg_*_is_visible(oid)`: every object a Bowman session can name is on its search path.
fn always_visible(name: &str) -> datafusion::logical_expr::ScalarUDF {
    use datafusion::arrow::array::BooleanArray;
    use datafusion::arrow::datatypes::DataType;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    create_udf(
        name,
        vec![DataType::Int32],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            Ok(match &args[0] {
                ColumnarValue::Array(a) => ColumnarValue::Array(Arc::new(BooleanArray::from(vec![true; a.len()]))),
                ColumnarValue::Scalar(_) => ColumnarValue::Scalar(datafusion::common::ScalarValue::Boolean(Some(true))),
            })
        }),
    )
}

/// Whether a statement is a client's catalog introspection, which PostgreSQL clients write in
/// PostgreSQL's dialect (`OPERATOR(pg_catalog.~)`, `::regclass`, `COLLATE pg_catalog.default`,
/// `ANY(array)`) and the compatibility parser rewrites into what DataFusion plans.
pub(crate) fn is_introspection(sql: &str) -> bool {
    // Only queries: Bowman's own statements (CREATE TABLE ... USING, INSERT ... PARTITION) need
    // Bowman's parser whatever they name.
    if !matches!(crate::parser::leading_keyword(sql).as_str(), "SELECT" | "WITH") {
        return false;
    }
    const CATALOG_OBJECTS: &[&str] = &[
        "pg_catalog", "pg_namespace", "pg_class", "pg_type", "pg_attribute", "::reg", "pg_database", "pg_settings",
        "pg_proc", "pg_tables", "pg_views", "pg_matviews", "pg_depend", "pg_rewrite", "pg_stat_activity",
    ];
    let lower = sql.to_ascii_lowercase();
    CATALOG_OBJECTS.iter().any(|o| lower.contains(o))
}

/// A replacement expression for a rewrite, in the dialect clients' catalog queries use.
fn pg_expr(sql: &str) -> Option<datafusion::sql::sqlparser::ast::Expr> {
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    datafusion::sql::sqlparser::parser::Parser::new(&dialect).try_with_sql(sql).and_then(|mut p| p.parse_expr()).ok()
}

/// `(SELECT c.relkind = 'c' FROM pg_class c WHERE c.oid = t.typrelid)`: PostgreSQL runs a
/// correlated scalar subquery and fails if it returns two rows; DataFusion only plans one that
/// is aggregated. Catalog queries look rows up by OID (unique), so wrapping the single selected
/// expression in `max` keeps the answer and makes it plannable.
fn aggregate_scalar_subquery(query: &mut datafusion::sql::sqlparser::ast::Query) {
    use datafusion::sql::sqlparser::ast::{Expr, GroupByExpr, SelectItem, SetExpr};
    let SetExpr::Select(select) = query.body.as_mut() else { return };
    let grouped = match &select.group_by {
        GroupByExpr::All(_) => true,
        GroupByExpr::Expressions(exprs, _) => !exprs.is_empty(),
    };
    if grouped || select.projection.len() != 1 || select.from.is_empty() {
        return;
    }
    let aggregates = ["count", "max", "min", "sum", "avg", "array_agg", "bool_and", "bool_or", "string_agg", "every", "first_value"];
    let (expr, alias) = match &select.projection[0] {
        SelectItem::UnnamedExpr(e) => (e.clone(), None),
        SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), Some(alias.clone())),
        _ => return,
    };
    if let Expr::Function(f) = &expr {
        let name = f.name.to_string().to_ascii_lowercase();
        if aggregates.iter().any(|a| name == *a || name.ends_with(&format!(".{a}"))) {
            return;
        }
    }
    let Some(wrapped) = pg_expr(&format!("max({expr})")) else { return };
    select.projection[0] = match alias {
        Some(alias) => SelectItem::ExprWithAlias { expr: wrapped, alias },
        None => SelectItem::UnnamedExpr(wrapped),
    };
}

/// A correlated scalar subquery that uses the outer row other than in its correlation
/// predicates: `(SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d WHERE a.atthasdef AND
/// d.adrelid = a.attrelid ...)` and `(SELECT json_build_object('always', a.attidentity = 'a',
/// 'start', s.seqstart) FROM pg_sequence s WHERE ...)` (SQLAlchemy 2.1's column reflection).
/// DataFusion cannot decorrelate these when they sit inside another expression (a CASE), so
/// the outer parts move out, keeping the answer:
/// - a condition on the outer row alone becomes `CASE WHEN condition THEN (subquery) END`;
/// - outer columns in the selected expression stay outside: the subquery selects the inner
///   columns it needs as one struct `r`, and the expression is evaluated over `r`'s fields,
///   NULL when the subquery finds no row (as the original would be).
///
/// Outer columns are recognized by their qualifier, which names no relation of the subquery's
/// FROM (catalog queries qualify every column).
fn hoist_outer_references(query: &datafusion::sql::sqlparser::ast::Query) -> Option<datafusion::sql::sqlparser::ast::Expr> {
    use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, GroupByExpr, SelectItem, SetExpr, TableFactor};
    let SetExpr::Select(select) = query.body.as_ref() else { return None };
    let grouped = match &select.group_by {
        GroupByExpr::All(_) => true,
        GroupByExpr::Expressions(exprs, _) => !exprs.is_empty(),
    };
    if grouped || select.projection.len() != 1 || select.from.is_empty() || query.order_by.is_some() || query.limit_clause.is_some() {
        return None;
    }
    // A scalar subquery's column name is not seen outside it.
    let projected = match &select.projection[0] {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e.clone(),
        _ => return None,
    };
    // The relations of the subquery, by alias or (last part of the) name.
    let mut inner: Vec<String> = Vec::new();
    let mut add = |f: &TableFactor| match f {
        TableFactor::Table { name, alias, .. } => match alias {
            Some(a) => inner.push(a.name.value.to_ascii_lowercase()),
            None => {
                if let Some(last) = name.0.last().and_then(|p| p.as_ident()) {
                    inner.push(last.value.to_ascii_lowercase());
                }
            }
        },
        TableFactor::Derived { alias: Some(a), .. } => inner.push(a.name.value.to_ascii_lowercase()),
        _ => {}
    };
    for t in &select.from {
        add(&t.relation);
        for j in &t.joins {
            add(&j.relation);
        }
    }
    // A column is the outer row's when its qualifier names no relation of the subquery.
    let is_outer = |parts: &[datafusion::sql::sqlparser::ast::Ident]| -> bool {
        parts.len() >= 2 && !inner.contains(&parts[parts.len() - 2].value.to_ascii_lowercase())
    };
    let columns = |e: &Expr| -> Vec<(Expr, bool)> {
        let mut found = Vec::new();
        let _ = datafusion::sql::sqlparser::ast::visit_expressions(e, |x| {
            match x {
                Expr::CompoundIdentifier(parts) => found.push((x.clone(), is_outer(parts))),
                Expr::Identifier(_) => found.push((x.clone(), false)),
                _ => {}
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        found
    };
    fn conjuncts(e: &Expr, out: &mut Vec<Expr>) {
        match e {
            Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
                conjuncts(left, out);
                conjuncts(right, out);
            }
            Expr::Nested(inner) if matches!(inner.as_ref(), Expr::BinaryOp { op: BinaryOperator::And, .. }) => conjuncts(inner, out),
            other => out.push(other.clone()),
        }
    }
    let mut outer_conditions = Vec::new();
    let mut rest = Vec::new();
    if let Some(w) = &select.selection {
        let mut all = Vec::new();
        conjuncts(w, &mut all);
        for c in all {
            let cols = columns(&c);
            if !cols.is_empty() && cols.iter().all(|(_, outer)| *outer) {
                outer_conditions.push(c);
            } else {
                rest.push(c);
            }
        }
    }
    let projected_cols = columns(&projected);
    let outer_in_projection = projected_cols.iter().any(|(_, outer)| *outer);
    if outer_conditions.is_empty() && !outer_in_projection {
        return None;
    }
    let mut sub = query.clone();
    let SetExpr::Select(sub_select) = sub.body.as_mut() else { return None };
    sub_select.selection = rest.into_iter().reduce(|a, b| Expr::BinaryOp { left: Box::new(a), op: BinaryOperator::And, right: Box::new(b) });
    let core = if outer_in_projection {
        let mut inner_cols: Vec<String> = Vec::new();
        for (c, outer) in &projected_cols {
            let text = c.to_string();
            if !outer && !inner_cols.contains(&text) {
                inner_cols.push(text);
            }
        }
        let fields: Vec<String> = inner_cols.iter().enumerate().map(|(i, c)| format!("'c{i}', {c}")).collect();
        let record = if fields.is_empty() { "named_struct('c', 1)".to_string() } else { format!("named_struct({})", fields.join(", ")) };
        sub_select.projection = vec![SelectItem::UnnamedExpr(pg_expr(&format!("first_value({record})"))?)];
        let r = format!("({sub})");
        let mut text = projected.to_string();
        // Replace the inner columns by the struct's fields, longest first so that `s.seqmin`
        // is not replaced inside `s.seqminvalue`.
        let mut by_length: Vec<(usize, &String)> = inner_cols.iter().enumerate().collect();
        by_length.sort_by_key(|(_, c)| std::cmp::Reverse(c.len()));
        let mut placeholders = Vec::new();
        for (i, c) in by_length {
            let mark = format!("__bowman_inner_{i}__");
            text = text.replace(c.as_str(), &mark);
            placeholders.push((mark, format!("get_field({r}, 'c{i}')")));
        }
        for (mark, field) in placeholders {
            text = text.replace(&mark, &field);
        }
        format!("CASE WHEN {r} IS NULL THEN NULL ELSE {text} END")
    } else {
        let mut wrapped = sub.clone();
        aggregate_scalar_subquery(&mut wrapped);
        format!("({wrapped})")
    };
    let sql = if outer_conditions.is_empty() {
        core
    } else {
        let condition = outer_conditions.iter().map(|c| format!("({c})")).collect::<Vec<_>>().join(" AND ");
        format!("CASE WHEN {condition} THEN {core} ELSE NULL END")
    };
    pg_expr(&sql).map(|e| Expr::Nested(Box::new(e)))
}

/// `pg_table_is_visible(oid)` as PostgreSQL means it: the relation is in a schema on the search
/// path, which for a Bowman session is its current database (and pg_catalog). The crate's
/// function answers true for every table, so clients listing "the tables" without a schema
/// (SQLAlchemy's `get_table_names()`) would get every database's tables.
pub(crate) fn rewrite_visibility(stmt: &mut datafusion::sql::sqlparser::ast::Statement) {
    use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, visit_expressions_mut};
    use std::ops::ControlFlow;
    // pg_stat_activity is Bowman's (crate::registry), unknown to the crate's qualifier.
    crate::registry::qualify_pg_stat_activity(stmt);
    let _ = visit_expressions_mut(stmt, |e| {
        if let Expr::Subquery(q) = e {
            if let Some(hoisted) = hoist_outer_references(q) {
                *e = hoisted;
                return ControlFlow::<()>::Continue(());
            }
            aggregate_scalar_subquery(q);
        }
        // `'pg_catalog.array_in'::regproc`: the crate's pg_type keeps procedures by name
        // (typinput = 'array_in'), so compare names.
        if let Expr::Cast { expr, data_type, .. } = e {
            if data_type.to_string().eq_ignore_ascii_case("regproc") {
                if let Expr::Value(v) = expr.as_ref() {
                    if let datafusion::sql::sqlparser::ast::Value::SingleQuotedString(name) = &v.value {
                        let bare = name.strip_prefix("pg_catalog.").unwrap_or(name).to_string();
                        *e = Expr::Value(datafusion::sql::sqlparser::ast::Value::SingleQuotedString(bare).into());
                        return ControlFlow::<()>::Continue(());
                    }
                }
            }
        }
        // `(information_schema._pg_expandarray(i.indkey)).n`, `(result.keys).x`: field access on
        // a record, which DataFusion's planner takes with the field name as a string.
        if let Some(field) = expanded_array_field(e) {
            *e = field;
            return ControlFlow::<()>::Continue(());
        }
        // (`t.col[i]` keeps its form: DataFusion resolves names before a subscript itself.)
        if let Expr::CompoundFieldAccess { root, access_chain } = e {
            let named_root = matches!(root.as_ref(), Expr::Identifier(_) | Expr::CompoundIdentifier(_));
            for access in access_chain.iter_mut().filter(|_| !named_root) {
                if let datafusion::sql::sqlparser::ast::AccessExpr::Dot(Expr::Identifier(field)) = access {
                    let name = crate::parser::ident_value(field);
                    *access = datafusion::sql::sqlparser::ast::AccessExpr::Dot(Expr::Value(
                        datafusion::sql::sqlparser::ast::Value::SingleQuotedString(name).into(),
                    ));
                }
            }
        }
        // `typreceive != 0`: a regproc column compared with the OID 0 (no function), as
        // adbc-driver-postgresql reads pg_type. The crate keeps these columns as names, with
        // `-` for none (how PostgreSQL prints regproc 0).
        if let Expr::BinaryOp { left, op: BinaryOperator::Eq | BinaryOperator::NotEq, right } = e {
            let zero = |e: &Expr| matches!(e, Expr::Value(v) if matches!(&v.value, datafusion::sql::sqlparser::ast::Value::Number(n, _) if n == "0"));
            let none = || Expr::Value(datafusion::sql::sqlparser::ast::Value::SingleQuotedString("-".into()).into());
            if is_regproc_column(left) && zero(right) {
                **right = none();
            } else if is_regproc_column(right) && zero(left) {
                **left = none();
            }
        }
        if let Expr::Function(f) = e {
            let name = f.name.to_string().to_ascii_lowercase();
            if name == "generate_subscripts" || name == "pg_catalog.generate_subscripts" {
                // generate_subscripts(a, 1): the subscripts of a one-dimensional array, as a set
                // (zipped with other set-returning calls in the select list, as unnest is).
                if let FunctionArguments::List(list) = &f.args {
                    if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))) = list.args.first() {
                        let sql = format!("unnest(range(CAST(1 AS BIGINT), CAST(coalesce(array_length({arg}), 0) + 1 AS BIGINT)))");
                        if let Some(parsed) = pg_expr(&sql) {
                            *e = parsed;
                            return ControlFlow::<()>::Continue(());
                        }
                    }
                }
            }
            if name == "information_schema._pg_expandarray" || name == "_pg_expandarray" {
                // A set-returning function in the select list: its records, unnested (the
                // function returns them as a list; see pg_functions). The compatibility parser
                // drops the schema. Expressions are visited children first, so the call this
                // creates is not rewritten again.
                if let FunctionArguments::List(list) = &f.args {
                    if let [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] = list.args.as_slice() {
                        if let Some(parsed) = pg_expr(&format!("unnest(_pg_expandarray({arg}))")) {
                            *e = Expr::Nested(Box::new(parsed));
                            return ControlFlow::<()>::Continue(());
                        }
                    }
                }
            }
            if name == "pg_get_viewdef" || name == "pg_catalog.pg_get_viewdef" {
                // pg_get_viewdef(oid [, pretty]): the view's query, looked up through pg_class
                // (whose OIDs the crate assigns) in Bowman's pg_views.
                if let FunctionArguments::List(list) = &f.args {
                    if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))) = list.args.first() {
                        let sql = format!(
                            "(SELECT max(bowman_vd_v.definition) FROM pg_catalog.pg_views bowman_vd_v \
                             JOIN pg_catalog.pg_namespace bowman_vd_n ON bowman_vd_n.nspname = bowman_vd_v.schemaname \
                             JOIN pg_catalog.pg_class bowman_vd_c ON bowman_vd_c.relnamespace = bowman_vd_n.oid \
                             AND bowman_vd_c.relname = bowman_vd_v.viewname WHERE bowman_vd_c.oid = ({arg}))"
                        );
                        if let Some(parsed) = pg_expr(&sql) {
                            *e = parsed;
                            return ControlFlow::<()>::Continue(());
                        }
                    }
                }
            }
            if name == "pg_table_is_visible" || name == "pg_catalog.pg_table_is_visible" {
                if let FunctionArguments::List(list) = &f.args {
                    if let [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] = list.args.as_slice() {
                        let sql = format!(
                            "({arg}) IN (SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n \
                             ON c.relnamespace = n.oid WHERE n.nspname = current_schema() OR n.nspname = 'pg_catalog')"
                        );
                        if let Some(parsed) = pg_expr(&sql) {
                            *e = Expr::Nested(Box::new(parsed));
                        }
                    }
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `(information_schema._pg_expandarray(a)).x` / `.n` (already rewritten to
/// `(unnest(_pg_expandarray(a))).x`): one field of the records, as its own set-returning call
/// (`unnest(a)`, or the 1-based subscripts), since DataFusion cannot take a field of an
/// unnested value. Set-returning calls of one select list are zipped, so the fields of one
/// record stay together.
fn expanded_array_field(e: &datafusion::sql::sqlparser::ast::Expr) -> Option<datafusion::sql::sqlparser::ast::Expr> {
    use datafusion::sql::sqlparser::ast::{AccessExpr, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Value};
    let Expr::CompoundFieldAccess { root, access_chain } = e else { return None };
    let [AccessExpr::Dot(field)] = access_chain.as_slice() else { return None };
    let field = match field {
        Expr::Identifier(i) => crate::parser::ident_value(i),
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            _ => return None,
        },
        _ => return None,
    };
    let only_arg = |e: &Expr, name: &str| -> Option<Expr> {
        let mut e = e;
        while let Expr::Nested(inner) = e {
            e = inner;
        }
        let Expr::Function(f) = e else { return None };
        if !f.name.to_string().eq_ignore_ascii_case(name) {
            return None;
        }
        match &f.args {
            FunctionArguments::List(list) => match list.args.as_slice() {
                [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] => Some(arg.clone()),
                _ => None,
            },
            _ => None,
        }
    };
    let array = only_arg(&only_arg(root, "unnest")?, "_pg_expandarray")?;
    match field.as_str() {
        "x" => pg_expr(&format!("unnest({array})")),
        "n" => pg_expr(&format!("unnest(range(CAST(1 AS INT), CAST(coalesce(array_length({array}), 0) + 1 AS INT)))")),
        _ => None,
    }
}

/// The `regproc` columns of pg_type (function references the crate keeps as names).
fn is_regproc_column(e: &datafusion::sql::sqlparser::ast::Expr) -> bool {
    use datafusion::sql::sqlparser::ast::Expr;
    const REGPROC: &[&str] = &["typinput", "typoutput", "typreceive", "typsend", "typmodin", "typmodout", "typanalyze", "typsubscript"];
    let name = match e {
        Expr::Identifier(i) => &i.value,
        Expr::CompoundIdentifier(parts) => match parts.last() {
            Some(i) => &i.value,
            None => return false,
        },
        _ => return false,
    };
    REGPROC.iter().any(|c| name.eq_ignore_ascii_case(c))
}

/// `'pg_catalog.array_in'::regproc` -> `'array_in'`, in the SQL text before the compatibility
/// parser (whose own rule would turn it into an OID lookup, while the crate's pg_type keeps
/// procedures by name, e.g. `typinput = 'array_in'`, as pgjdbc's type cache compares them).
pub(crate) fn regproc_literals_as_names(sql: &str) -> std::borrow::Cow<'_, str> {
    let lower = sql.to_ascii_lowercase();
    if !lower.contains("::regproc") {
        return std::borrow::Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(pos) = rest.to_ascii_lowercase().find("::regproc") {
        let (before, after) = rest.split_at(pos);
        let after = &after["::regproc".len()..];
        // Only a quoted literal right before the cast, and not `::regprocedure`.
        let literal_start = before.strip_suffix('\'').and_then(|b| b.rfind('\''));
        let next_is_word = after.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        match literal_start {
            Some(start) if !next_is_word => {
                let name = &before[start + 1..before.len() - 1];
                out.push_str(&before[..start]);
                out.push('\'');
                out.push_str(name.strip_prefix("pg_catalog.").unwrap_or(name));
                out.push('\'');
            }
            _ => {
                out.push_str(before);
                out.push_str(&rest[pos..pos + "::regproc".len()]);
            }
        }
        rest = after;
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn regproc_literals_become_names() {
        assert_eq!(
            super::regproc_literals_as_names("SELECT typinput='pg_catalog.array_in'::regproc as is_array FROM pg_type"),
            "SELECT typinput='array_in' as is_array FROM pg_type"
        );
        assert_eq!(super::regproc_literals_as_names("SELECT x::regprocedure"), "SELECT x::regprocedure");
    }
}

/// A catalog table with extra columns that are always NULL (columns clients select that the
/// crate's tables lack).
#[derive(Debug)]
struct WithNullColumns {
    inner: Arc<dyn datafusion::catalog::TableProvider>,
    schema: SchemaRef,
}

impl WithNullColumns {
    fn new(inner: Arc<dyn datafusion::catalog::TableProvider>, extra: Vec<Field>) -> Self {
        let mut fields: Vec<Field> = inner.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.extend(extra);
        WithNullColumns { inner, schema: Arc::new(Schema::new(fields)) }
    }
}

#[async_trait]
impl datafusion::catalog::TableProvider for WithNullColumns {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        _filters: &[datafusion::prelude::Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        use datafusion::physical_expr::expressions::{Column, Literal};
        use datafusion::physical_expr::projection::ProjectionExpr;
        let inner_width = self.inner.schema().fields().len();
        let wanted: Vec<usize> = projection.cloned().unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        // Scan all of the inner table's columns that are wanted; add the NULL ones on top.
        let inner_cols: Vec<usize> = wanted.iter().copied().filter(|&i| i < inner_width).collect();
        let plan = self.inner.scan(state, Some(&inner_cols), &[], limit).await?;
        let mut exprs = Vec::with_capacity(wanted.len());
        for &i in &wanted {
            let field = self.schema.field(i);
            let expr: Arc<dyn datafusion::physical_expr::PhysicalExpr> = match inner_cols.iter().position(|&c| c == i) {
                Some(pos) => Arc::new(Column::new(field.name(), pos)),
                None => Arc::new(Literal::new(datafusion::common::ScalarValue::try_from(field.data_type())?)),
            };
            exprs.push(ProjectionExpr { expr, alias: field.name().clone() });
        }
        Ok(Arc::new(datafusion::physical_plan::projection::ProjectionExec::try_new(exprs, plan)?))
    }
}

/// pg_class with `relacl` (text[] of aclitems such as `alice=r/bowman`) from the catalog's
/// grants; NULL for relations nothing was granted on, as in PostgreSQL. Built when scanned (a
/// few rows per relation).
#[derive(Debug)]
struct WithAcl {
    inner: Arc<dyn datafusion::catalog::TableProvider>,
    namespaces: Arc<dyn datafusion::catalog::TableProvider>,
    catalog: Arc<Catalog>,
    schema: SchemaRef,
}

impl WithAcl {
    fn new(inner: Arc<dyn datafusion::catalog::TableProvider>, namespaces: Arc<dyn datafusion::catalog::TableProvider>, catalog: Arc<Catalog>) -> Self {
        use datafusion::arrow::datatypes::DataType;
        let mut fields: Vec<Field> = inner.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("relacl", DataType::new_list(DataType::Utf8, true), true));
        WithAcl { inner, namespaces, catalog, schema: Arc::new(Schema::new(fields)) }
    }
}

#[async_trait]
impl datafusion::catalog::TableProvider for WithAcl {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::prelude::Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        use datafusion::arrow::array::{Array, AsArray, ListBuilder, RecordBatch, StringBuilder};
        use datafusion::arrow::datatypes::Int32Type;
        let task = state.task_ctx();
        let namespaces = datafusion::physical_plan::collect(self.namespaces.scan(state, None, &[], None).await?, task.clone()).await?;
        let mut schema_names = std::collections::HashMap::new();
        for b in &namespaces {
            let (Some(oid), Some(name)) = (b.column_by_name("oid"), b.column_by_name("nspname")) else { continue };
            let oid = datafusion::arrow::compute::cast(oid, &datafusion::arrow::datatypes::DataType::Int32)?;
            let name = datafusion::arrow::compute::cast(name, &datafusion::arrow::datatypes::DataType::Utf8)?;
            let (oid, name) = (oid.as_primitive::<Int32Type>(), name.as_string::<i32>());
            for i in 0..b.num_rows() {
                if !oid.is_null(i) && !name.is_null(i) {
                    schema_names.insert(oid.value(i), name.value(i).to_string());
                }
            }
        }
        let snapshot = self.catalog.snapshot();
        let mut out = Vec::new();
        for b in datafusion::physical_plan::collect(self.inner.scan(state, None, &[], None).await?, task).await? {
            let mut acl = ListBuilder::new(StringBuilder::new());
            let names = datafusion::arrow::compute::cast(b.column_by_name("relname").expect("pg_class.relname"), &datafusion::arrow::datatypes::DataType::Utf8)?;
            let spaces = datafusion::arrow::compute::cast(b.column_by_name("relnamespace").expect("pg_class.relnamespace"), &datafusion::arrow::datatypes::DataType::Int32)?;
            let (names, spaces) = (names.as_string::<i32>(), spaces.as_primitive::<Int32Type>());
            for i in 0..b.num_rows() {
                let items = schema_names
                    .get(&spaces.value(i))
                    .and_then(|schema| crate::privileges::table_acl(&snapshot, bowman_catalog::canonical_database(schema), names.value(i)));
                match items {
                    Some(items) => {
                        for item in items {
                            acl.values().append_value(item);
                        }
                        acl.append(true);
                    }
                    None => acl.append(false),
                }
            }
            let mut columns = b.columns().to_vec();
            columns.push(Arc::new(acl.finish()));
            out.push(RecordBatch::try_new(self.schema.clone(), columns)?);
        }
        let table = datafusion::datasource::MemTable::try_new(self.schema.clone(), vec![out])?;
        table.scan(state, projection, filters, limit).await
    }
}
