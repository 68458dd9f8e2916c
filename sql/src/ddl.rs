//! Bowman's own statements: databases, tables, and the SHOW / DESCRIBE family.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bowman_catalog::{CatalogChange, CatalogError, ColumnDef, DatabaseDef, TableDef, TableKind};
use bowman_connector::Connector;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::{DFSchema, TableReference};
use datafusion::logical_expr::{CreateExternalTable, cast, col};
use datafusion::prelude::DataFrame;

use crate::engine::normalize_location;
use crate::error::{BowmanError, Result};
use crate::output::{Output, text_schema};
use crate::parser::{CreateTable, Statement, TableName};
use crate::session::Session;
use crate::types::{parse_type, type_name};

pub(crate) async fn execute(session: &mut Session, stmt: Statement) -> Result<Output> {
    match stmt {
        Statement::CreateDatabase { name, if_not_exists, comment, location } => {
            check_dir_name("database", &name)?;
            crate::registry::refuse_system_database(&name)?;
            session.require_create_db()?;
            let location = location.map(|l| normalize_location(&l)).transpose()?;
            if let Some(l) = &location {
                // Managed tables of the database are written there.
                session.require_server_files(l, true)?;
            }
            let def = DatabaseDef { name, comment, location, created_at: now_millis(), owner: session.owner() };
            session.engine.catalog.apply(CatalogChange::CreateDatabase { def, if_not_exists }).await?;
            Ok(Output::command("CREATE DATABASE"))
        }
        Statement::DropDatabase { name, if_exists, cascade } => {
            crate::registry::refuse_system_database(&name)?;
            session.require_database_owner(bowman_catalog::canonical_database(&name))?;
            if cascade {
                let snapshot = session.engine.catalog.snapshot();
                if let Some(entry) = snapshot.database(&name) {
                    for t in entry.tables.keys().chain(entry.views.keys()) {
                        session.require_table_owner(&name, t)?;
                    }
                }
            }
            let outcome = session.engine.catalog.apply(CatalogChange::DropDatabase { name: name.clone(), if_exists, cascade }).await?;
            for t in &outcome.dropped_tables {
                delete_managed_data(session, t).await;
            }
            if session.current_database() == name && outcome.applied {
                session.set_current_database(bowman_catalog::DEFAULT_DATABASE);
            }
            Ok(Output::command("DROP DATABASE"))
        }
        Statement::Use { database } => {
            if session.engine.catalog.snapshot().database(&database).is_none() {
                return Err(CatalogError::DatabaseNotFound(database).into());
            }
            session.set_current_database(&database);
            Ok(Output::command("USE"))
        }
        Statement::CreateTable(ct) => create_table(session, *ct).await,
        Statement::CreateView(cv) => crate::views::create_view(session, *cv).await,
        Statement::DropView { names, if_exists } => crate::views::drop_views(session, names, if_exists).await,
        Statement::CreateUser { name, options, if_not_exists, create, user } => {
            crate::privileges::create_or_alter_role(session, name, options, if_not_exists, create, user).await
        }
        Statement::Grant(g) => crate::privileges::execute_grant(session, *g).await,
        Statement::CreateFunction { name, kind, options, or_replace, if_not_exists } => {
            crate::functions::create(session, name, kind, options, or_replace, if_not_exists).await
        }
        Statement::DropFunction { name, if_exists } => crate::functions::drop(session, name, if_exists).await,
        Statement::DropUser { name, if_exists } => crate::privileges::drop_role(session, name, if_exists).await,
        Statement::RenameTable { name, to, if_exists } => {
            let database = name.database.clone().unwrap_or_else(|| session.current_database());
            let snapshot = session.engine.catalog.snapshot();
            if if_exists && snapshot.table(&database, &name.name).is_none() && snapshot.view(&database, &name.name).is_none() {
                return Ok(Output::command("ALTER TABLE"));
            }
            let new_database = to.database.clone().unwrap_or_else(|| database.clone());
            session.require_table_owner(&database, &name.name)?;
            if bowman_catalog::canonical_database(&new_database) != bowman_catalog::canonical_database(&database) {
                session.require_create_in(bowman_catalog::canonical_database(&new_database))?;
            }
            session
                .engine
                .catalog
                .apply(CatalogChange::RenameTable { database, name: name.name, new_database, new_name: to.name })
                .await?;
            Ok(Output::command("ALTER TABLE"))
        }
        Statement::DropTable { name, if_exists } => {
            let database = name.database.clone().unwrap_or_else(|| session.current_database());
            session.require_table_owner(&database, &name.name)?;
            let outcome = session
                .engine
                .catalog
                .apply(CatalogChange::DropTable { database, name: name.name.clone(), if_exists })
                .await?;
            for t in &outcome.dropped_tables {
                delete_managed_data(session, t).await;
                hand_over_external_files(session, t).await;
            }
            Ok(Output::command("DROP TABLE"))
        }
        Statement::ShowDatabases { like } => {
            let snapshot = session.engine.catalog.snapshot();
            let rows = snapshot
                .databases
                .keys()
                .filter(|n| like.as_deref().is_none_or(|p| spark_like(p, n)))
                .map(|n| vec![Some(n.clone())])
                .collect();
            Output::text_rows(&["namespace"], rows)
        }
        Statement::ShowTables { database, like } => {
            let db = database.unwrap_or_else(|| session.current_database());
            let snapshot = session.engine.catalog.snapshot();
            let entry = snapshot.database(&db).ok_or_else(|| CatalogError::DatabaseNotFound(db.clone()))?;
            let mut names: Vec<&String> = entry.tables.keys().chain(entry.views.keys()).collect();
            names.sort();
            let mut rows: Vec<Vec<Option<String>>> = names
                .into_iter()
                .filter(|n| like.as_deref().is_none_or(|p| spark_like(p, n)))
                .map(|n| vec![Some(db.clone()), Some(n.clone()), Some("false".to_string())])
                .collect();
            // Spark lists the session's temporary views too, without a namespace.
            for n in session.temp_views.read().expect("temp views").keys() {
                if like.as_deref().is_none_or(|p| spark_like(p, n)) {
                    rows.push(vec![Some(String::new()), Some(n.clone()), Some("true".to_string())]);
                }
            }
            Output::text_rows(&["namespace", "tableName", "isTemporary"], rows)
        }
        Statement::ShowCreateTable { name } => {
            if let Some(view) = lookup_view(session, &name) {
                return Output::text_rows(&["createtab_stmt"], vec![vec![Some(crate::views::render_create_view(&view))]]);
            }
            let def = lookup(session, &name)?;
            Output::text_rows(&["createtab_stmt"], vec![vec![Some(render_create_table(&def))]])
        }
        Statement::Describe { name, extended } => {
            if let Some(view) = lookup_view(session, &name) {
                return Output::text_rows(&["col_name", "data_type", "comment"], crate::views::describe_rows(&view, extended));
            }
            let def = lookup(session, &name)?;
            Output::text_rows(&["col_name", "data_type", "comment"], describe_rows(&def, extended))
        }
        Statement::Optimize { name, predicate, sort_by, zorder } => optimize(session, name, predicate, sort_by, zorder).await,
        other => Err(BowmanError::Internal(format!("statement {other:?} reached the DDL executor"))),
    }
}

/// The result columns of a Bowman statement, known before it runs.
pub(crate) fn statement_schema(stmt: &Statement) -> Option<SchemaRef> {
    match stmt {
        Statement::ShowDatabases { .. } => Some(text_schema(&["namespace"])),
        Statement::ShowTables { .. } => Some(text_schema(&["namespace", "tableName", "isTemporary"])),
        Statement::ShowCreateTable { .. } => Some(text_schema(&["createtab_stmt"])),
        Statement::Describe { .. } => Some(text_schema(&["col_name", "data_type", "comment"])),
        Statement::Show { name } if name == "all" => Some(text_schema(&["name", "setting"])),
        Statement::Show { name } => Some(text_schema(&[name.as_str()])),
        _ => None,
    }
}

pub(crate) fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The catalog view `name` names, if it names one.
fn lookup_view(session: &Session, name: &TableName) -> Option<bowman_catalog::ViewDef> {
    let db = name.database.clone().unwrap_or_else(|| session.current_database());
    session.engine.catalog.snapshot().view(&db, &name.name).cloned()
}

fn lookup(session: &Session, name: &TableName) -> Result<TableDef> {
    let db = name.database.clone().unwrap_or_else(|| session.current_database());
    let snapshot = session.engine.catalog.snapshot();
    if snapshot.database(&db).is_none() {
        return Err(CatalogError::DatabaseNotFound(db).into());
    }
    snapshot.table(&db, &name.name).cloned().ok_or_else(|| CatalogError::TableNotFound(db, name.name.clone()).into())
}

/// Spark's SHOW ... LIKE patterns: `*` matches anything, `|` separates alternatives,
/// case-insensitive.
fn spark_like(pattern: &str, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    pattern.split('|').any(|alt| crate::pattern::wildcard_match(&alt.trim().to_ascii_lowercase(), &name, '*', None))
}

/// A database or table name as one directory of a managed location: it must stay one path
/// segment under its parent, so `""`, `.`, `..`, and names with `/`, `\\`, URL delimiters
/// (`#`, `?`, `%`) or control characters are refused (they would name another directory).
fn check_dir_name(kind: &str, name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.chars().any(|c| c.is_control() || matches!(c, '/' | '\\' | '#' | '?' | '%'));
    if bad {
        return Err(BowmanError::InvalidName(format!(
            "{kind} name {name:?} cannot name a directory of the warehouse; use letters, digits, _ and - \
             (or give the table a LOCATION)"
        )));
    }
    Ok(())
}

fn managed_location(session: &Session, database: &str, table: &str) -> Result<String> {
    check_dir_name("table", table)?;
    check_dir_name("database", database)?;
    let snapshot = session.engine.catalog.snapshot();
    let db_location = snapshot.database(database).and_then(|d| d.def.location.clone());
    let location = match db_location {
        Some(loc) => format!("{loc}/{table}"),
        None if database == bowman_catalog::DEFAULT_DATABASE => format!("{}/{table}", session.engine.warehouse),
        None => format!("{}/{database}.db/{table}", session.engine.warehouse),
    };
    // A renamed table keeps its directory, so the usual one for this name may belong to another
    // table; a new table must never take over (and clear) it.
    let taken = |loc: &str| {
        snapshot.databases.values().flat_map(|d| d.tables.values()).any(|t| {
            t.location.as_deref().is_some_and(|l| l.trim_end_matches('/') == loc.trim_end_matches('/'))
        })
    };
    if !taken(&location) {
        return Ok(location);
    }
    Ok((1..).map(|n| format!("{location}-{n}")).find(|l| !taken(l)).expect("an unused location"))
}

fn local_path(location: &str) -> Option<std::path::PathBuf> {
    url::Url::parse(location).ok().filter(|u| u.scheme() == "file").and_then(|u| u.to_file_path().ok())
}

/// Delete everything under a location (local directory or S3 prefix).
async fn delete_location(session: &Session, location: &str) -> Result<()> {
    delete_location_with(&session.engine.runtime, location).await
}

pub(crate) async fn delete_location_with(
    runtime: &datafusion::execution::runtime_env::RuntimeEnv,
    location: &str,
) -> Result<()> {
    if let Some(path) = local_path(location) {
        match std::fs::remove_dir_all(&path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(BowmanError::Io(format!("cannot delete {}: {e}", path.display()))),
        }
    }
    let url = bowman_connector_files::table_url(location)?;
    let store = runtime.object_store(&url)?;
    crate::sweeper::delete_prefix(store.as_ref(), url.prefix(), location).await
}

async fn delete_managed_data(session: &Session, table: &TableDef) {
    if table.kind != TableKind::Managed {
        return;
    }
    if let Some(location) = &table.location {
        if let Err(e) = delete_location(session, location).await {
            // The table is gone from the catalog either way; leftover files are only disk space.
            tracing::warn!(table = %table.qualified_name(), error = %e.message(), "could not delete the data of a dropped table");
        }
    }
}

/// An external table's files outlive it, and what it decided about them must too: Bowman's
/// files it made live stay visible, files it retired stay hidden. Another table over the same
/// LOCATION takes both over; with none left, retired files and Bowman files that never became
/// live (writes that died) are deleted, so the next table over the location can adopt what is
/// there.
async fn hand_over_external_files(session: &Session, table: &TableDef) {
    if table.kind != TableKind::External || table.tracked {
        return;
    }
    let Some(location) = table.location.clone() else { return };
    let Some(connector) = session.engine.resolver.connectors.get(&table.format) else { return };
    if crate::resolver::layout(connector.as_ref(), table) != Some(crate::tracked::Layout::Listed) {
        return;
    }
    let siblings = crate::resolver::siblings(&session.engine.catalog.snapshot(), table);
    let retired: Vec<String> = table.retired.iter().map(|r| r.path.clone()).collect();
    if let Some(heir) = siblings.first() {
        let add: Vec<_> = table.live.iter().filter(|l| !heir.live.contains(l)).cloned().collect();
        let change = CatalogChange::CommitWrite {
            database: heir.database.clone(),
            name: heir.name.clone(),
            replace: bowman_catalog::Replace::Nothing,
            add,
            expect: None,
            retire_files: retired,
        };
        if let Err(e) = session.engine.catalog.apply(change).await {
            tracing::warn!(table = %heir.qualified_name(), error = %e, "could not take over the files of a dropped table over the same location");
        }
        return;
    }
    let result: Result<()> = async {
        let live: HashSet<&str> = table.live.iter().map(|l| l.dir.as_str()).collect();
        for (rel, _) in crate::tracked::location_files(&session.engine.runtime, &location).await? {
            let doomed = retired.contains(&rel) || (crate::tracked::is_bowman_file(&rel) && !live.contains(rel.as_str()));
            if doomed {
                if let Err(e) = crate::sweeper::delete_file(&session.engine.runtime, &location, &rel).await {
                    tracing::warn!(error = %e.message(), "could not delete a replaced file of a dropped table");
                }
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(table = %table.qualified_name(), error = %e.message(), "could not clean the location of a dropped table");
    }
}

/// A new external table adopts the Bowman files already at its LOCATION (written through a
/// table dropped since, or through another table over the same directory): they stay visible.
async fn adopt_bowman_files(session: &Session, def: &TableDef) -> Result<Vec<bowman_catalog::LiveDir>> {
    let Some(location) = def.location.as_deref() else { return Ok(Vec::new()) };
    let files = crate::tracked::location_files(&session.engine.runtime, location).await?;
    let siblings = crate::resolver::siblings(&session.engine.catalog.snapshot(), def);
    let retired: HashSet<String> = siblings.iter().flat_map(|t| t.retired.iter().map(|r| r.path.clone())).collect();
    let sibling_live: HashSet<String> = siblings.iter().flat_map(|t| t.live.iter().map(|l| l.dir.clone())).collect();
    let mut live = Vec::new();
    for (rel, _) in files {
        // With other tables over the location, only what they made live (not their writes in
        // progress); without, everything Bowman left there (dead writes were deleted at DROP).
        let adopt = crate::tracked::is_bowman_file(&rel)
            && !retired.contains(&rel)
            && (siblings.is_empty() || sibling_live.contains(&rel));
        if adopt {
            let partition = rel.rsplit_once('/').map(|(p, _)| p.to_string()).unwrap_or_default();
            live.push(bowman_catalog::LiveDir { partition, dir: rel });
        }
    }
    live.sort();
    Ok(live)
}

struct ResolvedColumn {
    def: ColumnDef,
    field: Field,
}

fn resolve_columns(ct: &CreateTable) -> Result<Vec<ResolvedColumn>> {
    let mut specs: Vec<(String, String, bool, Option<String>)> =
        ct.columns.iter().map(|c| (c.name.clone(), c.data_type.clone(), c.nullable, c.comment.clone())).collect();
    // Hive's form declares partition columns (with types) outside the column list.
    for (name, t) in &ct.partitioned_by {
        if let Some(t) = t {
            if specs.iter().any(|s| &s.0 == name) {
                return Err(BowmanError::InvalidDefinition(format!(
                    "partition column '{name}' has a type in PARTITIONED BY and is also in the column list"
                )));
            }
            specs.push((name.clone(), t.clone(), true, None));
        }
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (name, t, nullable, comment) in specs {
        if !seen.insert(name.clone()) {
            return Err(BowmanError::InvalidDefinition(format!("column '{name}' is specified more than once")));
        }
        let (arrow, canonical) = parse_type(&t)?;
        out.push(ResolvedColumn {
            field: Field::new(&name, arrow, nullable),
            def: ColumnDef { name, data_type: canonical, nullable, comment },
        });
    }
    Ok(out)
}

/// Move partition columns to the end, in PARTITIONED BY order (Spark's layout).
fn order_partitions<T>(mut cols: Vec<T>, partitions: &[String], name: impl Fn(&T) -> &str) -> Result<Vec<T>> {
    let mut tail = Vec::new();
    for p in partitions {
        let idx = cols
            .iter()
            .position(|c| name(c) == p)
            .ok_or_else(|| BowmanError::UndefinedColumn(format!("{p} (named in PARTITIONED BY)")))?;
        tail.push(cols.remove(idx));
    }
    cols.extend(tail);
    Ok(cols)
}

async fn create_table(session: &mut Session, ct: CreateTable) -> Result<Output> {
    create_table_or_explain(session, ct, None).await
}

/// `explain`: `Some((analyze, verbose))` for EXPLAIN of CREATE TABLE ... AS SELECT into a file
/// table: without ANALYZE, the write's plan with nothing created; with it, the table is made
/// and written as usual and the plan answers with its metrics.
async fn create_table_or_explain(session: &mut Session, ct: CreateTable, explain: Option<(bool, bool)>) -> Result<Output> {
    let plan_only = matches!(explain, Some((false, _)));
    if ct.temporary {
        return create_temp_view(session, ct).await;
    }
    if ct.or_replace {
        return Err(BowmanError::NotSupported("CREATE OR REPLACE TABLE; drop the table first".into()));
    }
    let database = ct.name.database.clone().unwrap_or_else(|| session.current_database());
    let name = ct.name.name.clone();
    let snapshot = session.engine.catalog.snapshot();
    if snapshot.database(&database).is_none() {
        return Err(CatalogError::DatabaseNotFound(database).into());
    }
    session.require_create_in(bowman_catalog::canonical_database(&database))?;
    if snapshot.table(&database, &name).is_some() {
        if ct.if_not_exists {
            return Ok(Output::command("CREATE TABLE"));
        }
        return Err(CatalogError::TableExists(database, name).into());
    }

    let format = ct.format.clone().unwrap_or_else(|| "parquet".to_string()).to_ascii_lowercase();
    let connector: Arc<dyn Connector> = session.engine.resolver.connectors.get(&format).ok_or_else(|| {
        BowmanError::UnknownFormat { name: format.clone(), known: session.engine.resolver.connectors.names().join(", ") }
    })?;

    let mut all_options = ct.options.clone();
    all_options.extend(ct.properties.clone());
    let (options, secret_options) = connector.split_options(&all_options);
    if connector.stores_files() && !connector.keeps_own_log() {
        // Bowman writes these files: its file limits are checked before the table exists.
        crate::plan::roll::table_limits(&options)?;
    }

    let (kind, location) = match &ct.location {
        Some(l) => (TableKind::External, Some(normalize_location(l)?)),
        None if connector.stores_files() => (TableKind::Managed, Some(managed_location(session, &database, &name)?)),
        None => (TableKind::External, None),
    };
    if kind == TableKind::External {
        if let Some(l) = &location {
            // An external table reads (and INSERT writes) whatever is at its LOCATION.
            session.require_server_files(l, false)?;
            if ct.query.is_some() {
                session.require_server_files(l, true)?;
            }
        }
    }
    let partition_names: Vec<String> = ct.partitioned_by.iter().map(|(n, _)| n.clone()).collect();

    // Columns: declared, or taken from the query of CREATE TABLE ... AS SELECT, or inferred.
    let mut query_df: Option<DataFrame> = None;
    let mut columns: Vec<ColumnDef> = Vec::new();
    let mut fields: Vec<Field> = Vec::new();
    if let Some(query) = &ct.query {
        if !ct.columns.is_empty() {
            return Err(BowmanError::InvalidDefinition(
                "CREATE TABLE ... AS SELECT takes its columns from the query; remove the column list".into(),
            ));
        }
        let plan = session.plan_query(query.clone()).await?;
        let df = session.ctx.execute_logical_plan(plan).await?;
        let query_fields: Vec<Field> = df.schema().as_arrow().fields().iter().map(|f| f.as_ref().clone()).collect();
        let ordered = order_partitions(query_fields, &partition_names, |f| f.name())?;
        let mut exprs = Vec::new();
        for f in ordered {
            let canonical = type_name(f.data_type())?;
            let (arrow, _) = parse_type(&canonical)?;
            exprs.push(cast(col(datafusion::common::Column::from_name(f.name())), arrow.clone()).alias(f.name()));
            columns.push(ColumnDef { name: f.name().clone(), data_type: canonical, nullable: true, comment: None });
            fields.push(Field::new(f.name(), arrow, true));
        }
        query_df = Some(df.select(exprs)?);
    } else {
        let resolved = resolve_columns(&ct)?;
        // Without a column list the schema (partition columns included) is inferred below.
        let resolved = if resolved.is_empty() {
            resolved
        } else {
            order_partitions(resolved, &partition_names, |c| c.def.name.as_str())?
        };
        for c in resolved {
            columns.push(c.def);
            fields.push(c.field);
        }
        if columns.is_empty() && !partition_names.is_empty() && ct.partitioned_by.iter().any(|(_, t)| t.is_some()) {
            return Err(BowmanError::InvalidDefinition("declare the data columns as well as the partition columns".into()));
        }
    }

    let mut cmd_options: std::collections::HashMap<String, String> = options.clone().into_iter().collect();
    cmd_options.extend(secret_options.clone());
    let schema = DFSchema::try_from(Schema::new(fields.clone()))?;
    let cmd = CreateExternalTable::builder(
        TableReference::partial(database.as_str(), name.as_str()),
        location.clone().unwrap_or_default(),
        format.clone(),
        Arc::new(schema),
    )
    .with_partition_cols(partition_names.clone())
    .with_options(cmd_options)
    .build();

    let state = session.ctx.state();
    if explain.is_some() && (query_df.is_none() || connector.keeps_own_log() || !connector.stores_files()) {
        return Err(BowmanError::NotSupported(format!(
            "EXPLAIN of this CREATE TABLE ({format}): only CREATE TABLE ... AS SELECT into a file table is a plan; \
             other tables are made by one catalog change (and Delta's first log entry), which EXPLAIN does not show"
        )));
    }
    if !plan_only {
        if kind == TableKind::Managed {
            if let Some(path) = location.as_deref().and_then(local_path) {
                std::fs::create_dir_all(&path).map_err(|e| BowmanError::Io(format!("cannot create {}: {e}", path.display())))?;
            }
        }
        // Reachability and credentials (this also sets up the S3 client for the location).
        connector.validate(&state, &cmd).await?;
        if kind == TableKind::Managed {
            if let Some(loc) = &location {
                prepare_managed_location(session, loc).await?;
            }
        }
        connector.initialize(&state, &cmd).await?;
    }
    // Opening the table checks its options (EXPLAIN opens it below, through the catalog's
    // resolver, without anything at its location).
    let provider = if plan_only { None } else { Some(connector.create(&state, &cmd).await?) };
    if let (true, Some(provider)) = (columns.is_empty(), &provider) {
        // Inferred from the data at LOCATION.
        for f in provider.schema().fields() {
            columns.push(ColumnDef {
                name: f.name().clone(),
                data_type: type_name(f.data_type())?,
                nullable: true,
                comment: None,
            });
        }
    }

    let mut def = TableDef {
        database: database.clone(),
        name: name.clone(),
        kind,
        format,
        location: location.clone(),
        columns,
        partition_columns: partition_names,
        options,
        secret_options,
        comment: ct.comment.clone(),
        created_at: now_millis(),
        // Bowman owns a managed table's files, so the catalog can say which are live.
        tracked: kind == TableKind::Managed && connector.stores_files() && !connector.keeps_own_log(),
        live: Vec::new(),
        retired: Vec::new(),
        owner: session.owner(),
        data_version: 0,
    };

    if query_df.is_none() && crate::resolver::layout(connector.as_ref(), &def) == Some(crate::tracked::Layout::Listed) {
        def.live = adopt_bowman_files(session, &def).await?;
    }
    let mut written = None;
    let mut created = false;
    if let Some(df) = query_df {
        let table = TableReference::partial(database.as_str(), name.as_str());
        // Write through the same provider later statements will use (tracked for managed
        // tables). A tracked table's write is Bowman's write plan, whose commit creates the
        // table with the directories its writers report, in one catalog change; other
        // formats commit in their sinks (Delta's log), and the table is created after.
        let target = session.engine.table_provider(&def).await?;
        if let Some((analyze, verbose)) = explain {
            if crate::commit::tracked(&target).is_none() {
                return Err(BowmanError::NotSupported(format!("EXPLAIN CREATE TABLE {table} ... AS SELECT into a table Bowman does not track")));
            }
            let plan = session.creating_write_plan(&target, ct.if_not_exists, df.into_unoptimized_plan())?;
            let plan = datafusion::logical_expr::LogicalPlanBuilder::from(plan).explain(verbose, analyze)?.build()?;
            let result = session.run_plan(plan).await;
            if result.is_err() && analyze && kind == TableKind::Managed {
                if let Some(loc) = &location {
                    let _ = delete_location(session, loc).await;
                }
            }
            return result;
        }
        let result: Result<usize> = async {
            if crate::commit::tracked(&target).is_some() {
                let plan = session.creating_write_plan(&target, ct.if_not_exists, df.into_unoptimized_plan())?;
                let rows = session.write_rows(plan, &format!("CREATE TABLE {table}")).await?;
                created = true;
                return Ok(rows);
            }
            session.write(table, target.clone(), df.into_unoptimized_plan()).await
        }
        .await;
        match result {
            Ok(n) => written = Some(n),
            Err(e) => {
                if kind == TableKind::Managed {
                    if let Some(loc) = &location {
                        let _ = delete_location(session, loc).await;
                    }
                }
                return Err(e);
            }
        }
    }

    if created {
        return Ok(Output::Command { tag: "SELECT".into(), rows: written });
    }
    if let Err(e) = session.engine.catalog.apply(CatalogChange::CreateTable { def, if_not_exists: ct.if_not_exists }).await {
        if kind == TableKind::Managed && written.is_some() {
            if let Some(loc) = &location {
                let _ = delete_location(session, loc).await;
            }
        }
        return Err(e.into());
    }
    Ok(match written {
        Some(n) => Output::Command { tag: "SELECT".into(), rows: Some(n) },
        None => Output::command("CREATE TABLE"),
    })
}

/// `CREATE [OR REPLACE] TEMPORARY VIEW v USING postgres OPTIONS (...)`: a table of this session
/// only. Nothing reaches the catalog (its options, secrets included, live in the session), and
/// it is gone when the connection closes.
async fn create_temp_view(session: &mut Session, ct: CreateTable) -> Result<Output> {
    if ct.name.database.is_some() {
        return Err(BowmanError::InvalidDefinition(format!(
            "a temporary view has no database; name it {} alone",
            ct.name.name
        )));
    }
    if ct.query.is_some() || ct.format.is_none() {
        return Err(BowmanError::NotSupported("CREATE TEMPORARY VIEW without USING; use CREATE VIEW ... AS".into()));
    }
    let name = ct.name.name.clone();
    if !ct.or_replace && session.temp_views.read().expect("temp views").contains_key(&name) {
        if ct.if_not_exists {
            return Ok(Output::command("CREATE VIEW"));
        }
        return Err(BowmanError::InvalidDefinition(format!("temporary view {name} already exists; use CREATE OR REPLACE TEMPORARY VIEW")));
    }
    let format = ct.format.clone().unwrap_or_default().to_ascii_lowercase();
    let connector: Arc<dyn Connector> = session.engine.resolver.connectors.get(&format).ok_or_else(|| {
        BowmanError::UnknownFormat { name: format.clone(), known: session.engine.resolver.connectors.names().join(", ") }
    })?;
    let mut options: std::collections::HashMap<String, String> = ct.options.clone().into_iter().collect();
    options.extend(ct.properties.clone());
    let location = match (&ct.location, options.get("path")) {
        (Some(l), _) | (None, Some(l)) => normalize_location(l)?,
        (None, None) => String::new(),
    };
    session.require_server_files(&location, false)?;
    let resolved = resolve_columns(&ct)?;
    let fields: Vec<Field> = resolved.into_iter().map(|c| c.field).collect();
    let cmd = CreateExternalTable::builder(
        TableReference::bare(name.as_str()),
        location,
        format,
        Arc::new(DFSchema::try_from(Schema::new(fields))?),
    )
    .with_partition_cols(ct.partitioned_by.iter().map(|(n, _)| n.clone()).collect())
    .with_options(options)
    .build();
    let state = session.ctx.state();
    connector.validate(&state, &cmd).await?;
    let provider = connector.create(&state, &cmd).await?;
    session.temp_views.write().expect("temp views").insert(name, provider);
    Ok(Output::command("CREATE VIEW"))
}

fn quote_sql_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// OPTIMIZE: an INSERT OVERWRITE of the selected partitions with their own rows, distributed
/// by the partition columns (one writer, so one file, per partition) and sorted as asked. It
/// commits like any overwrite: atomically, without renames; replaced files go after
/// `file_retention`.
async fn optimize(
    session: &Session,
    name: TableName,
    predicate: Option<datafusion::sql::sqlparser::ast::Expr>,
    sort_by: Vec<datafusion::sql::sqlparser::ast::Expr>,
    zorder: bool,
) -> Result<Output> {
    let def = lookup(session, &name)?;
    // Rewriting a table's files is its owner's business (PostgreSQL's VACUUM and CLUSTER).
    session.require_table_owner(&def.database, &def.name)?;
    if session.engine.keeps_own_log(&def) {
        return optimize_own_log(session, &def, predicate, sort_by, zorder).await;
    }
    let plan = optimize_plan(session, &def, predicate, sort_by, zorder).await?;
    let output = session.run_plan(plan).await?;
    Ok(match output {
        Output::Command { rows, .. } => Output::Command { tag: "OPTIMIZE".into(), rows },
        other => other,
    })
}

/// `EXPLAIN [ANALYZE] [VERBOSE] OPTIMIZE ...`: the rewrite's plan (its scan, exchange, sort,
/// writers and commit), run only under ANALYZE.
pub(crate) async fn explain(session: &mut Session, statement: Statement, analyze: bool, verbose: bool, what: &str) -> Result<Output> {
    match statement {
        Statement::Optimize { .. } => explain_optimize(session, statement, analyze, verbose).await,
        Statement::CreateTable(ct) if ct.query.is_some() && !ct.temporary => {
            create_table_or_explain(session, *ct, Some((analyze, verbose))).await
        }
        _ => Err(BowmanError::NotSupported(format!(
            "EXPLAIN {what}: Bowman runs it as a catalog change or a command, not as a plan; EXPLAIN takes queries, \
             INSERT, OPTIMIZE and CREATE TABLE ... AS SELECT"
        ))),
    }
}

async fn explain_optimize(session: &Session, statement: Statement, analyze: bool, verbose: bool) -> Result<Output> {
    let Statement::Optimize { name, predicate, sort_by, zorder } = statement else {
        return Err(BowmanError::Internal("not OPTIMIZE".into()));
    };
    let def = lookup(session, &name)?;
    session.require_table_owner(&def.database, &def.name)?;
    if session.engine.keeps_own_log(&def) {
        return Err(BowmanError::NotSupported(format!(
            "EXPLAIN OPTIMIZE {}: a table with its own log (Delta) is compacted by its format's library, not by a plan Bowman can show",
            def.qualified_name()
        )));
    }
    let plan = optimize_plan(session, &def, predicate, sort_by, zorder).await?;
    let plan = datafusion::logical_expr::LogicalPlanBuilder::from(plan).explain(verbose, analyze)?.build()?;
    session.run_plan(plan).await
}

/// The plan of OPTIMIZE on a tracked table: an overwrite of the selected partitions with
/// their own rows, distributed by the partition columns, sorted as asked, committed only if
/// nobody wrote those partitions meanwhile.
async fn optimize_plan(
    session: &Session,
    def: &TableDef,
    predicate: Option<datafusion::sql::sqlparser::ast::Expr>,
    sort_by: Vec<datafusion::sql::sqlparser::ast::Expr>,
    zorder: bool,
) -> Result<datafusion::logical_expr::LogicalPlan> {
    let def = def.clone();
    if zorder {
        return Err(BowmanError::NotSupported(
            "OPTIMIZE ... ZORDER BY applies to delta tables; use SORT BY (columns) on this table".into(),
        ));
    }
    let provider = session.engine.table_provider(&def).await?;
    if crate::commit::tracked(&provider).is_none() {
        return Err(BowmanError::NotSupported(format!(
            "OPTIMIZE {}: only file and Delta tables with a directory LOCATION can be optimized",
            def.qualified_name()
        )));
    }
    let table = format!("{}.{}", quote_sql_ident(&def.database), quote_sql_ident(&def.name));
    let columns: Vec<String> = def.columns.iter().map(|c| quote_sql_ident(&c.name)).collect();
    let parts: Vec<String> = def.partition_columns.iter().map(|p| quote_sql_ident(p)).collect();
    if let Some(pred) = &predicate {
        // Only partition predicates: rewriting a partition with a subset of its rows would lose data.
        let plan = session
            .plan_query(match crate::parser::parse_sql(&format!("SELECT 1 FROM {table} WHERE {pred}"))?.pop() {
                Some(Statement::Standard(s)) => match *s {
                    datafusion::sql::sqlparser::ast::Statement::Query(q) => q,
                    _ => return Err(BowmanError::Internal("OPTIMIZE predicate did not parse as a query".into())),
                },
                _ => return Err(BowmanError::Internal("OPTIMIZE predicate did not parse as a query".into())),
            })
            .await?;
        let mut refs = std::collections::BTreeSet::new();
        datafusion::common::tree_node::TreeNode::apply(&plan, |node| {
            if let datafusion::logical_expr::LogicalPlan::Filter(f) = node {
                for c in f.predicate.column_refs() {
                    refs.insert(c.name.clone());
                }
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })?;
        if let Some(bad) = refs.iter().find(|c| !def.partition_columns.contains(c)) {
            return Err(BowmanError::InvalidValue(format!(
                "OPTIMIZE ... WHERE may only use partition columns ({}); {bad} is not one",
                def.partition_columns.join(", ")
            )));
        }
    }
    let mut sql = format!("INSERT OVERWRITE TABLE {table}");
    if !parts.is_empty() {
        sql.push_str(&format!(" PARTITION ({})", parts.join(", ")));
    }
    sql.push_str(&format!(" SELECT {} FROM {table}", columns.join(", ")));
    if let Some(pred) = &predicate {
        sql.push_str(&format!(" WHERE {pred}"));
    }
    if !parts.is_empty() {
        sql.push_str(&format!(" DISTRIBUTE BY {}", parts.join(", ")));
    }
    if !sort_by.is_empty() {
        let keys: Vec<String> = sort_by.iter().map(|e| e.to_string()).collect();
        sql.push_str(&format!(" SORT BY {}", keys.join(", ")));
    }
    let Some(Statement::Standard(stmt)) = crate::parser::parse_sql(&sql)?.pop() else {
        return Err(BowmanError::Internal("OPTIMIZE produced no statement".into()));
    };
    crate::insert::plan_with_mode(session, *stmt, Some("rewrite")).await
}

/// OPTIMIZE on a table with its own log (Delta): deltalake's compaction (bin-packing small files per partition)
/// or Z-ordering, committed as one new table version.
async fn optimize_own_log(
    session: &Session,
    def: &TableDef,
    predicate: Option<datafusion::sql::sqlparser::ast::Expr>,
    sort_by: Vec<datafusion::sql::sqlparser::ast::Expr>,
    zorder: bool,
) -> Result<Output> {
    if !sort_by.is_empty() && !zorder {
        return Err(BowmanError::NotSupported(format!(
            "OPTIMIZE {} SORT BY: delta tables are clustered with ZORDER BY (columns)",
            def.qualified_name()
        )));
    }
    let mut filters = Vec::new();
    if let Some(p) = &predicate {
        partition_filters(def, p, &mut filters)?;
    }
    let columns = sort_by
        .iter()
        .map(|e| match e {
            datafusion::sql::sqlparser::ast::Expr::Identifier(i) => Ok(crate::parser::ident_value(i)),
            other => Err(BowmanError::InvalidValue(format!("ZORDER BY takes column names, not {other}"))),
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(bad) = columns.iter().find(|c| !def.columns.iter().any(|d| &d.name == *c)) {
        return Err(BowmanError::UndefinedColumn(format!("{bad} (ZORDER BY) is not a column of {}", def.qualified_name())));
    }
    if let Some(part) = columns.iter().find(|c| def.partition_columns.contains(c)) {
        return Err(BowmanError::InvalidValue(format!(
            "ZORDER BY {part}: it is a partition column, so every file already holds one value of it"
        )));
    }
    let provider = session.engine.table_provider(def).await?;
    let table = session
        .engine
        .own_log_table(def, &provider)
        .ok_or_else(|| BowmanError::Internal(format!("{} is not open as a table with its own log", def.qualified_name())))?;
    let (added, removed) = table.optimize(&filters, columns).await?;
    session.notice(format!("OPTIMIZE {}: {removed} files rewritten into {added}", def.qualified_name()));
    Ok(Output::Command { tag: "OPTIMIZE".into(), rows: Some(removed as usize) })
}

/// A partition predicate (`dt = '...' AND region IN (...)`) as deltalake partition filters.
fn partition_filters(
    def: &TableDef,
    e: &datafusion::sql::sqlparser::ast::Expr,
    out: &mut Vec<(String, String, Vec<String>)>,
) -> Result<()> {
    use datafusion::sql::sqlparser::ast::{BinaryOperator as Op, Expr as E, Value as V};
    let column = |e: &E| -> Result<String> {
        let E::Identifier(i) = e else {
            return Err(BowmanError::NotSupported(format!("OPTIMIZE ... WHERE {e}: compare partition columns with literals")));
        };
        let c = crate::parser::ident_value(i);
        if !def.partition_columns.contains(&c) {
            return Err(BowmanError::InvalidValue(format!(
                "OPTIMIZE ... WHERE may only use partition columns ({}); {c} is not one",
                def.partition_columns.join(", ")
            )));
        }
        Ok(c)
    };
    let literal = |e: &E| -> Result<String> {
        match e {
            E::Value(v) => match &v.value {
                V::SingleQuotedString(s) | V::DoubleQuotedString(s) => Ok(s.clone()),
                V::Number(n, _) => Ok(n.clone()),
                V::Boolean(b) => Ok(b.to_string()),
                other => Err(BowmanError::NotSupported(format!("OPTIMIZE ... WHERE: literal {other}"))),
            },
            E::TypedString(t) => match &t.value.value {
                V::SingleQuotedString(s) => Ok(s.clone()),
                other => Err(BowmanError::NotSupported(format!("OPTIMIZE ... WHERE: literal {other}"))),
            },
            other => Err(BowmanError::NotSupported(format!("OPTIMIZE ... WHERE: {other} is not a literal"))),
        }
    };
    match e {
        E::Nested(inner) => partition_filters(def, inner, out),
        E::BinaryOp { left, op: Op::And, right } => {
            partition_filters(def, left, out)?;
            partition_filters(def, right, out)
        }
        E::BinaryOp { left, op, right } => {
            let op = match op {
                Op::Eq => "=",
                Op::NotEq => "!=",
                Op::Lt => "<",
                Op::LtEq => "<=",
                Op::Gt => ">",
                Op::GtEq => ">=",
                other => return Err(BowmanError::NotSupported(format!("OPTIMIZE ... WHERE with {other}; use =, <, >, IN and AND"))),
            };
            out.push((column(left)?, op.to_string(), vec![literal(right)?]));
            Ok(())
        }
        E::InList { expr, list, negated } => {
            let values = list.iter().map(&literal).collect::<Result<Vec<_>>>()?;
            out.push((column(expr)?, if *negated { "not in" } else { "in" }.to_string(), values));
            Ok(())
        }
        E::Between { expr, negated: false, low, high } => {
            let c = column(expr)?;
            out.push((c.clone(), ">=".into(), vec![literal(low)?]));
            out.push((c, "<=".into(), vec![literal(high)?]));
            Ok(())
        }
        other => Err(BowmanError::NotSupported(format!(
            "OPTIMIZE ... WHERE {other}: delta tables take comparisons of partition columns joined by AND"
        ))),
    }
}

/// A managed table's directory belongs to Bowman: leftovers of a table that was dropped, or of
/// a CREATE TABLE AS SELECT that crashed before its commit, are cleared before reuse. Only
/// Bowman's own layout is cleared (files in `_commit=` directories): a directory holding
/// anything else was not written by Bowman, and is refused rather than deleted.
async fn prepare_managed_location(session: &Session, location: &str) -> Result<()> {
    let files = crate::tracked::location_files(&session.engine.runtime, location).await?;
    let foreign = files.iter().find(|(rel, _)| !rel.split('/').any(|seg| seg.starts_with("_commit=")));
    if let Some((_, f)) = foreign {
        return Err(BowmanError::LocationInUse(format!(
            "the directory for this managed table, {location}, already holds files Bowman did not write ({}); \
             Bowman does not delete them: choose another name, or give the table that LOCATION to make it external",
            f
        )));
    }
    if !files.is_empty() {
        tracing::info!(location, "clearing leftover data at a new managed table's location");
        delete_location(session, location).await?;
    }
    if let Some(path) = local_path(location) {
        std::fs::create_dir_all(&path).map_err(|e| BowmanError::Io(format!("cannot create {}: {e}", path.display())))?;
    }
    Ok(())
}

fn quote_ident(name: &str) -> String {
    if !name.is_empty()
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
    {
        name.to_string()
    } else {
        format!("`{}`", name.replace('`', "``"))
    }
}

fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `SHOW CREATE TABLE`: Spark's layout. Secret options are left out entirely.
pub(crate) fn render_create_table(def: &TableDef) -> String {
    let mut out = format!("CREATE TABLE {}.{} (\n", quote_ident(&def.database), quote_ident(&def.name));
    let cols: Vec<String> = def
        .columns
        .iter()
        .map(|c| {
            let mut s = format!("  {} {}", quote_ident(&c.name), c.data_type);
            if !c.nullable {
                s.push_str(" NOT NULL");
            }
            if let Some(comment) = &c.comment {
                s.push_str(&format!(" COMMENT {}", quote_str(comment)));
            }
            s
        })
        .collect();
    out.push_str(&cols.join(",\n"));
    out.push_str(")\n");
    out.push_str(&format!("USING {}\n", def.format));
    if !def.options.is_empty() {
        let opts: Vec<String> = def.options.iter().map(|(k, v)| format!("  {} = {}", quote_str(k), quote_str(v))).collect();
        out.push_str(&format!("OPTIONS (\n{})\n", opts.join(",\n")));
    }
    if !def.partition_columns.is_empty() {
        let parts: Vec<String> = def.partition_columns.iter().map(|p| quote_ident(p)).collect();
        out.push_str(&format!("PARTITIONED BY ({})\n", parts.join(", ")));
    }
    if def.kind == TableKind::External {
        if let Some(loc) = &def.location {
            out.push_str(&format!("LOCATION {}\n", quote_str(loc)));
        }
    }
    if let Some(c) = &def.comment {
        out.push_str(&format!("COMMENT {}\n", quote_str(c)));
    }
    out.truncate(out.trim_end().len());
    out
}

fn describe_rows(def: &TableDef, extended: bool) -> Vec<Vec<Option<String>>> {
    let row = |a: &str, b: &str, c: Option<&str>| vec![Some(a.to_string()), Some(b.to_string()), c.map(str::to_string)];
    let mut rows: Vec<Vec<Option<String>>> =
        def.columns.iter().map(|c| row(&c.name, &c.data_type, c.comment.as_deref())).collect();
    if !def.partition_columns.is_empty() {
        rows.push(row("# Partition Information", "", None));
        rows.push(row("# col_name", "data_type", Some("comment")));
        for p in &def.partition_columns {
            if let Some(c) = def.columns.iter().find(|c| &c.name == p) {
                rows.push(row(&c.name, &c.data_type, c.comment.as_deref()));
            }
        }
    }
    if extended {
        rows.push(row("", "", None));
        rows.push(row("# Detailed Table Information", "", None));
        rows.push(row("Database", &def.database, None));
        rows.push(row("Table", &def.name, None));
        let created = chrono::DateTime::from_timestamp_millis(def.created_at).map(|t| t.to_rfc3339()).unwrap_or_default();
        rows.push(row("Created Time", &created, None));
        rows.push(row("Type", def.kind.as_str(), None));
        rows.push(row("Provider", &def.format, None));
        if let Some(c) = &def.comment {
            rows.push(row("Comment", c, None));
        }
        if let Some(loc) = &def.location {
            rows.push(row("Location", loc, None));
        }
        let mut shown: BTreeMap<&str, String> = def.options.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        for k in def.secret_options.keys() {
            shown.insert(k.as_str(), "*********(redacted)".to_string());
        }
        if !shown.is_empty() {
            let text: Vec<String> = shown.iter().map(|(k, v)| format!("{k}={v}")).collect();
            rows.push(row("Storage Properties", &format!("[{}]", text.join(", ")), None));
        }
        if !def.partition_columns.is_empty() {
            rows.push(row("Partition Provider", "Catalog", None));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns() {
        assert!(spark_like("ev*", "events"));
        assert!(spark_like("a|ev*", "a"));
        assert!(!spark_like("ev", "events"));
        assert!(spark_like("*", ""));
    }
}
