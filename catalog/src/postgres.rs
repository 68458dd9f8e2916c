use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Config, IsolationLevel, NoTls, Transaction};

use crate::error::{CatalogError, Result};
use crate::migrations::{MIGRATIONS, SCHEMA_TABLE, latest_version};
use crate::model::{CatalogState, Checkpoint, DatabaseDef, LiveDir, RetiredFile, RoleDef, TableDef};
use crate::retention::{RetiredClaim, RetiredDir, WriteIntent};
use crate::store::{
    CatalogChange, CatalogStore, ChangeOutcome, Changes, LOG_DATA, LOG_KEEP, LOG_SCHEMA, Op, TableKey, TableRow, assemble,
    deleted_tables, now_millis, plan_change, plan_transaction, retired_files, trims_log,
};

/// Advisory lock key that serialises migrations of nodes starting at the same time ("bowman" in ASCII).
const MIGRATION_LOCK: i64 = 0x626f776d616e;

/// Advisory lock key that serialises DDL of every node ("bowmanddl"): DDL reads the whole
/// catalog to check itself; data commits never take it.
const SCHEMA_LOCK: i64 = 0x626f776d616e64;

/// How many connections a node keeps to the catalog database: readers (statement starts,
/// `/health`) and writers of different tables do not wait for each other.
const POOL_SIZE: usize = 8;

/// A catalog shared by several Bowman nodes in one PostgreSQL database.
///
/// A data commit locks the rows of the tables it writes (`SELECT ... FOR UPDATE`, in one
/// order), reads only those tables, and takes the version row only for its last statements
/// (taking the next log version). DDL first takes an advisory lock that serialises DDL, reads
/// the whole catalog, and locks the rows of the tables it drops or renames before changing
/// them. Either way a writer sees the others' committed changes before checking its own.
pub struct PostgresStore {
    description: String,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the config: it holds the password.
        f.debug_struct("PostgresStore").field("at", &self.description).finish()
    }
}

impl PostgresStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let config: Config = url
            .parse()
            .map_err(|e| CatalogError::Store(format!("invalid catalog URL (expected postgres://user@host:port/db): {e}")))?;
        let description = describe_config(&config);
        let pool = Arc::new(Pool { config, description: description.clone(), idle: std::sync::Mutex::new(Vec::new()), permits: Arc::new(Semaphore::new(POOL_SIZE)) });
        let store = PostgresStore { description, pool };
        migrate(&mut *store.pool.get().await?).await?;
        Ok(store)
    }
}

/// Connections to the catalog database: at most [`POOL_SIZE`], idle ones reused, dead ones
/// (PostgreSQL restarted) replaced on the next use.
struct Pool {
    config: Config,
    description: String,
    idle: std::sync::Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
}

/// A connection taken from the pool; back in the pool when dropped (unless it died).
struct Pooled {
    client: Option<Client>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    async fn get(self: &Arc<Self>) -> Result<Pooled> {
        let permit = self.permits.clone().acquire_owned().await.expect("the catalog pool's semaphore is never closed");
        let reused = {
            let mut idle = self.idle.lock().expect("catalog pool");
            idle.retain(|c| !c.is_closed());
            idle.pop()
        };
        let client = match reused {
            Some(c) => c,
            None => {
                let (client, connection) = self.config.connect(NoTls).await.map_err(|e| {
                    CatalogError::Store(format!("cannot connect to the catalog database at {}: {e}", self.description))
                })?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::warn!(error = %e, "catalog database connection ended");
                    }
                });
                client
            }
        };
        Ok(Pooled { client: Some(client), pool: self.clone(), _permit: permit })
    }
}

impl Deref for Pooled {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("pooled client")
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("pooled client")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        // A transaction dropped half-way queued its ROLLBACK on this connection already, ahead
        // of whatever the next user sends.
        if let Some(c) = self.client.take().filter(|c| !c.is_closed()) {
            self.pool.idle.lock().expect("catalog pool").push(c);
        }
    }
}

fn describe_config(config: &Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{}:{}/{}",
        config.get_user().unwrap_or(""),
        host,
        port,
        config.get_dbname().unwrap_or("")
    )
}

async fn migrate(client: &mut Client) -> Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(SCHEMA_TABLE).await?;
    let current: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0)::BIGINT FROM bowman_schema_migrations", &[])
        .await?
        .get(0);
    if current > latest_version() {
        return Err(CatalogError::TooNew { found: current, known: latest_version() });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        for stmt in m.statements {
            tx.batch_execute(stmt).await?;
        }
        tx.execute(
            "INSERT INTO bowman_schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)",
            &[&m.version, &m.description, &now_millis()],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

const TABLE_COLUMNS: &str = "t.database_name, t.name, t.kind, t.format, t.location, t.columns, t.partition_columns,
     t.options, s.options, t.comment, t.created_at, t.tracked, t.owner, t.data_version
     FROM bowman_tables t
     LEFT JOIN bowman_table_secrets s ON s.database_name = t.database_name AND s.name = t.name";

fn table_row(r: &tokio_postgres::Row) -> TableRow {
    TableRow {
        database: r.get(0),
        name: r.get(1),
        kind: r.get(2),
        format: r.get(3),
        location: r.get(4),
        columns: r.get(5),
        partition_columns: r.get(6),
        options: r.get(7),
        secret_options: r.get(8),
        comment: r.get(9),
        created_at: r.get(10),
        tracked: r.get::<_, i32>(11) != 0,
        owner: r.get(12),
        data_version: r.get(13),
    }
}

/// (log version, schema version).
async fn versions(tx: &Transaction<'_>) -> Result<(i64, i64)> {
    let row = tx.query_one("SELECT version, schema_version FROM bowman_catalog_version WHERE id = 1", &[]).await?;
    Ok((row.get(0), row.get(1)))
}

/// One table with its live and retired entries; with `lock`, its row stays locked until the
/// transaction ends.
async fn read_table(tx: &Transaction<'_>, (database, name): &TableKey, lock: bool) -> Result<Option<TableDef>> {
    let lock = if lock { " FOR UPDATE OF t" } else { "" };
    let sql = format!("SELECT {TABLE_COLUMNS} WHERE t.database_name = $1 AND t.name = $2{lock}");
    let Some(row) = tx.query_opt(&sql, &[database, name]).await? else { return Ok(None) };
    let mut def = table_row(&row).decode()?;
    def.live = tx
        .query("SELECT dir, partition_path FROM bowman_live_dirs WHERE database_name = $1 AND table_name = $2", &[database, name])
        .await?
        .into_iter()
        .map(|r| LiveDir { dir: r.get(0), partition: r.get(1) })
        .collect();
    def.retired = tx
        .query("SELECT path, retired_at FROM bowman_retired_files WHERE database_name = $1 AND table_name = $2", &[database, name])
        .await?
        .into_iter()
        .map(|r| RetiredFile { path: r.get(0), retired_at: r.get(1) })
        .collect();
    def.live.sort();
    def.retired.sort();
    Ok(Some(def))
}

/// Take the next log version and record what it changed. The version row stays locked until
/// the commit, so versions become visible in order and a reader's log has no holes.
async fn log_commit(tx: &Transaction<'_>, kind: &str, tables: &[TableKey]) -> Result<i64> {
    let schema = if kind == LOG_SCHEMA { ", schema_version = version + 1" } else { "" };
    let version: i64 = tx
        .query_one(&format!("UPDATE bowman_catalog_version SET version = version + 1{schema} WHERE id = 1 RETURNING version"), &[])
        .await?
        .get(0);
    let now = now_millis();
    let schema_row = [(String::new(), String::new())];
    for (database, name) in if kind == LOG_SCHEMA { &schema_row[..] } else { tables } {
        tx.execute(
            "INSERT INTO bowman_catalog_log (version, kind, database_name, name, committed_at) VALUES ($1, $2, $3, $4, $5)",
            &[&version, &kind, database, name, &now],
        )
        .await?;
    }
    if trims_log(version) {
        tx.execute("DELETE FROM bowman_catalog_log WHERE version <= $1", &[&(version - LOG_KEEP)]).await?;
    }
    Ok(version)
}

async fn read_state(tx: &Transaction<'_>) -> Result<CatalogState> {
    let version = versions(tx).await?;
    let databases = tx
        .query("SELECT name, comment, location, created_at, owner FROM bowman_databases", &[])
        .await?
        .into_iter()
        .map(|r| DatabaseDef { name: r.get(0), comment: r.get(1), location: r.get(2), created_at: r.get(3), owner: r.get(4) })
        .collect();
    let tables = tx.query(&format!("SELECT {TABLE_COLUMNS}"), &[]).await?.iter().map(table_row).collect();
    let live = tx
        .query("SELECT database_name, table_name, dir, partition_path FROM bowman_live_dirs", &[])
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1), LiveDir { dir: r.get(2), partition: r.get(3) }))
        .collect();
    let retired = tx
        .query("SELECT database_name, table_name, path, retired_at FROM bowman_retired_files", &[])
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1), RetiredFile { path: r.get(2), retired_at: r.get(3) }))
        .collect();
    let users = tx
        .query("SELECT name, password_hash, superuser, can_login, create_role, create_db FROM bowman_users", &[])
        .await?
        .into_iter()
        .map(|r| {
            let role = RoleDef {
                name: r.get(0),
                superuser: r.get::<_, i32>(2) != 0,
                login: r.get::<_, i32>(3) != 0,
                create_role: r.get::<_, i32>(4) != 0,
                create_db: r.get::<_, i32>(5) != 0,
            };
            (role, r.get(1))
        })
        .collect();
    let grants = tx
        .query("SELECT object_kind, database_name, object_name, grantee, privilege, grantor, grant_option FROM bowman_grants", &[])
        .await?
        .into_iter()
        .map(|r| (r.get::<_, String>(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get::<_, i32>(6) != 0))
        .collect();
    let grants = crate::sqlite::decode_grants(grants)?;
    let functions = tx
        .query("SELECT name, kind, options, secret_options, created_at, owner FROM bowman_functions", &[])
        .await?
        .into_iter()
        .map(|r| crate::store::FunctionRow {
            name: r.get(0),
            kind: r.get(1),
            options: r.get(2),
            secret_options: r.get(3),
            created_at: r.get(4),
            owner: r.get(5),
        })
        .collect();
    let views = tx
        .query("SELECT database_name, name, query, query_database, columns, comment, created_at, owner FROM bowman_views", &[])
        .await?
        .into_iter()
        .map(|r| crate::store::ViewRow {
            database: r.get(0),
            name: r.get(1),
            query: r.get(2),
            query_database: r.get(3),
            columns: r.get(4),
            comment: r.get(5),
            created_at: r.get(6),
            owner: r.get(7),
        })
        .collect();
    assemble(version, databases, tables, live, retired, users, functions, views, grants)
}

async fn execute_op(tx: &Transaction<'_>, op: &Op) -> Result<()> {
    match op {
        Op::InsertDatabase(d) => {
            tx.execute(
                "INSERT INTO bowman_databases (name, comment, location, created_at, owner) VALUES ($1, $2, $3, $4, $5)",
                &[&d.name, &d.comment, &d.location, &d.created_at, &d.owner],
            )
            .await?;
        }
        Op::DeleteDatabase(name) => {
            tx.execute("DELETE FROM bowman_databases WHERE name = $1", &[name]).await?;
        }
        Op::InsertTable(def) => {
            let row = TableRow::encode(def)?;
            tx.execute(
                "INSERT INTO bowman_tables (database_name, name, kind, format, location, columns,
                     partition_columns, options, comment, created_at, tracked, owner, data_version)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                &[
                    &row.database,
                    &row.name,
                    &row.kind,
                    &row.format,
                    &row.location,
                    &row.columns,
                    &row.partition_columns,
                    &row.options,
                    &row.comment,
                    &row.created_at,
                    &(row.tracked as i32),
                    &row.owner,
                    &row.data_version,
                ],
            )
            .await?;
            tx.execute(
                "INSERT INTO bowman_table_secrets (database_name, name, options) VALUES ($1, $2, $3)",
                &[&row.database, &row.name, &row.secret_options],
            )
            .await?;
            for dir in &def.live {
                tx.execute(
                    "INSERT INTO bowman_live_dirs (database_name, table_name, dir, partition_path) VALUES ($1, $2, $3, $4)",
                    &[&def.database, &def.name, &dir.dir, &dir.partition],
                )
                .await?;
            }
            for file in &def.retired {
                tx.execute(
                    "INSERT INTO bowman_retired_files (database_name, table_name, path, retired_at) VALUES ($1, $2, $3, $4)",
                    &[&def.database, &def.name, &file.path, &file.retired_at],
                )
                .await?;
            }
        }
        Op::DeleteTable { database, name } => {
            tx.execute("DELETE FROM bowman_live_dirs WHERE database_name = $1 AND table_name = $2", &[database, name])
                .await?;
            tx.execute("DELETE FROM bowman_retired_files WHERE database_name = $1 AND table_name = $2", &[database, name])
                .await?;
            tx.execute("DELETE FROM bowman_table_secrets WHERE database_name = $1 AND name = $2", &[database, name])
                .await?;
            tx.execute("DELETE FROM bowman_tables WHERE database_name = $1 AND name = $2", &[database, name])
                .await?;
        }
        Op::InsertLiveDir { database, name, dir } => {
            tx.execute(
                "INSERT INTO bowman_live_dirs (database_name, table_name, dir, partition_path) VALUES ($1, $2, $3, $4)",
                &[database, name, &dir.dir, &dir.partition],
            )
            .await?;
        }
        Op::InsertUser { role, password_hash } => {
            tx.execute(
                "INSERT INTO bowman_users (name, password_hash, created_at, superuser, can_login, create_role, create_db)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &role.name,
                    password_hash,
                    &crate::store::now_millis(),
                    &(role.superuser as i32),
                    &(role.login as i32),
                    &(role.create_role as i32),
                    &(role.create_db as i32),
                ],
            )
            .await?;
        }
        Op::InsertGrant(g) => {
            let (kind, database, name) = g.object.key();
            tx.execute(
                "INSERT INTO bowman_grants (object_kind, database_name, object_name, grantee, privilege, grantor, grant_option)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&kind, &database, &name, &g.grantee, &g.privilege, &g.grantor, &(g.grant_option as i32)],
            )
            .await?;
        }
        Op::DeleteGrant { object, grantee, privilege } => {
            let (kind, database, name) = object.key();
            tx.execute(
                "DELETE FROM bowman_grants WHERE object_kind = $1 AND database_name = $2 AND object_name = $3
                     AND grantee = $4 AND privilege = $5",
                &[&kind, &database, &name, grantee, privilege],
            )
            .await?;
        }
        Op::DeleteUser(name) => {
            tx.execute("DELETE FROM bowman_users WHERE name = $1", &[name]).await?;
        }
        Op::InsertFunction(def) => {
            let row = crate::store::FunctionRow::encode(def)?;
            tx.execute(
                "INSERT INTO bowman_functions (name, kind, options, secret_options, created_at, owner) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&row.name, &row.kind, &row.options, &row.secret_options, &row.created_at, &row.owner],
            )
            .await?;
        }
        Op::DeleteFunction(name) => {
            tx.execute("DELETE FROM bowman_functions WHERE name = $1", &[name]).await?;
        }
        Op::InsertRetiredFile { database, name, file } => {
            tx.execute(
                "INSERT INTO bowman_retired_files (database_name, table_name, path, retired_at) VALUES ($1, $2, $3, $4)",
                &[database, name, &file.path, &file.retired_at],
            )
            .await?;
        }
        Op::DeleteRetiredFile { database, name, path } => {
            tx.execute(
                "DELETE FROM bowman_retired_files WHERE database_name = $1 AND table_name = $2 AND path = $3",
                &[database, name, path],
            )
            .await?;
        }
        Op::InsertView(def) => {
            let row = crate::store::ViewRow::encode(def)?;
            tx.execute(
                "INSERT INTO bowman_views (database_name, name, query, query_database, columns, comment, created_at, owner)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[&row.database, &row.name, &row.query, &row.query_database, &row.columns, &row.comment, &row.created_at, &row.owner],
            )
            .await?;
        }
        Op::DeleteView { database, name } => {
            tx.execute("DELETE FROM bowman_views WHERE database_name = $1 AND name = $2", &[database, name]).await?;
        }
        Op::SetTableSecrets { database, name, options } => {
            tx.execute("DELETE FROM bowman_table_secrets WHERE database_name = $1 AND name = $2", &[database, name])
                .await?;
            tx.execute(
                "INSERT INTO bowman_table_secrets (database_name, name, options) VALUES ($1, $2, $3)",
                &[database, name, options],
            )
            .await?;
        }
        Op::SetFunctionSecrets { name, options } => {
            tx.execute("UPDATE bowman_functions SET secret_options = $1 WHERE name = $2", &[options, name]).await?;
        }
        Op::PutCheckpoint(c) => {
            tx.execute("DELETE FROM bowman_checkpoints WHERE source = $1 AND source_partition = $2", &[&c.source, &c.partition])
                .await?;
            tx.execute(
                "INSERT INTO bowman_checkpoints (source, source_partition, source_offset, updated_at) VALUES ($1, $2, $3, $4)",
                &[&c.source, &c.partition, &c.offset, &now_millis()],
            )
            .await?;
        }
        Op::DeleteLiveDir { database, name, dir } => {
            tx.execute(
                "DELETE FROM bowman_live_dirs WHERE database_name = $1 AND table_name = $2 AND dir = $3",
                &[database, name, dir],
            )
            .await?;
        }
        Op::InsertRetiredDir(d) => {
            tx.execute(
                "INSERT INTO bowman_retired_dirs (location, dir, partition_path, database_name, table_name, retired_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (location, dir) DO NOTHING",
                &[&d.location, &d.dir, &d.partition, &d.database, &d.table, &d.retired_at],
            )
            .await?;
        }
        Op::DeleteWriteIntent { commit } => {
            tx.execute("DELETE FROM bowman_write_intents WHERE commit_id = $1", &[commit]).await?;
        }
    }
    Ok(())
}

/// DDL: serialised with every other node's DDL, checked against the whole catalog.
async fn apply_schema(tx: &Transaction<'_>, change: &CatalogChange) -> Result<ChangeOutcome> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).await?;
    let mut state = read_state(tx).await?;
    let (mut ops, mut dropped_tables) = plan_change(&state, change)?;
    let deleted = deleted_tables(&ops);
    if !deleted.is_empty() {
        // Wait for data commits to these tables, then plan again over what they committed.
        for (database, name) in &deleted {
            tx.query("SELECT 1 FROM bowman_tables WHERE database_name = $1 AND name = $2 FOR UPDATE", &[database, name]).await?;
        }
        state = read_state(tx).await?;
        (ops, dropped_tables) = plan_change(&state, change)?;
    }
    if ops.is_empty() {
        return Ok(ChangeOutcome { version: state.version, applied: false, dropped_tables, ..Default::default() });
    }
    for op in &ops {
        execute_op(tx, op).await?;
    }
    let version = log_commit(tx, LOG_SCHEMA, &[]).await?;
    Ok(ChangeOutcome { version, applied: true, dropped_tables, retired_files: retired_files(&ops), ..Default::default() })
}

/// A data transaction: locks and reads only the tables it names.
async fn apply_data(tx: &Transaction<'_>, t: &crate::store::Transaction) -> Result<ChangeOutcome> {
    let mut tables = BTreeMap::new();
    for key in t.tables() {
        if let Some(def) = read_table(tx, &key, true).await? {
            tables.insert(key, def);
        }
    }
    let plan = plan_transaction(tables, t)?;
    if plan.ops.is_empty() {
        let (version, _) = versions(tx).await?;
        return Ok(plan.outcome(version, false));
    }
    for op in &plan.ops {
        execute_op(tx, op).await?;
    }
    for (database, name) in &plan.bumped {
        tx.execute("UPDATE bowman_tables SET data_version = data_version + 1 WHERE database_name = $1 AND name = $2", &[database, name])
            .await?;
    }
    let touched: Vec<TableKey> = plan.touched.iter().cloned().collect();
    let version = log_commit(tx, LOG_DATA, &touched).await?;
    Ok(plan.outcome(version, true))
}

const RETIRED_COLUMNS: &str = "location, dir, partition_path, database_name, table_name, retired_at";

fn retired_row(r: &tokio_postgres::Row) -> RetiredDir {
    RetiredDir { location: r.get(0), dir: r.get(1), partition: r.get(2), database: r.get(3), table: r.get(4), retired_at: r.get(5) }
}

/// Retention rows: short statements outside the versioned state. A claim is one
/// `UPDATE ... RETURNING`, so of two nodes claiming at once each row goes to one.
impl PostgresStore {
    async fn run(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> Result<u64> {
        let client = self.pool.get().await?;
        Ok(client.execute(sql, params).await?)
    }

    async fn rows(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> Result<Vec<tokio_postgres::Row>> {
        let client = self.pool.get().await?;
        Ok(client.query(sql, params).await?)
    }

    async fn register_intent(&self, i: &WriteIntent) -> Result<()> {
        self.run(
            "INSERT INTO bowman_write_intents (commit_id, database_name, table_name, node, started_at, lease_until)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&i.commit, &i.database, &i.table, &i.node, &i.started_at, &i.lease_until],
        )
        .await?;
        Ok(())
    }

    async fn intents(&self) -> Result<Vec<WriteIntent>> {
        let rows = self.rows("SELECT commit_id, database_name, table_name, node, started_at, lease_until FROM bowman_write_intents", &[]).await?;
        Ok(rows
            .iter()
            .map(|r| WriteIntent { commit: r.get(0), database: r.get(1), table: r.get(2), node: r.get(3), started_at: r.get(4), lease_until: r.get(5) })
            .collect())
    }

    async fn claim(&self, which: &RetiredClaim, now: i64, claim_until: i64) -> Result<Vec<RetiredDir>> {
        let rows = match which {
            RetiredClaim::RetiredBefore(before) => {
                let sql = format!(
                    "UPDATE bowman_retired_dirs SET claimed_until = $1 WHERE retired_at <= $2 AND claimed_until <= $3 RETURNING {RETIRED_COLUMNS}"
                );
                self.rows(&sql, &[&claim_until, before, &now]).await?
            }
            RetiredClaim::Dirs { location, dirs } => {
                let sql = format!(
                    "UPDATE bowman_retired_dirs SET claimed_until = $1 WHERE location = $2 AND dir = ANY($3) AND claimed_until <= $4 RETURNING {RETIRED_COLUMNS}"
                );
                self.rows(&sql, &[&claim_until, location, dirs, &now]).await?
            }
        };
        Ok(rows.iter().map(retired_row).collect())
    }
}

#[async_trait]
impl CatalogStore for PostgresStore {
    async fn load(&self) -> Result<CatalogState> {
        let mut client = self.pool.get().await?;
        let tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await?;
        let state = read_state(&tx).await?;
        tx.commit().await?;
        Ok(state)
    }

    async fn version(&self) -> Result<i64> {
        let client = self.pool.get().await?;
        Ok(client.query_one("SELECT version FROM bowman_catalog_version WHERE id = 1", &[]).await?.get(0))
    }

    async fn changes_since(&self, since: i64) -> Result<Changes> {
        let mut client = self.pool.get().await?;
        let now: i64 = client.query_one("SELECT version FROM bowman_catalog_version WHERE id = 1", &[]).await?.get(0);
        if now == since {
            return Ok(Changes { version: now, ..Default::default() });
        }
        let tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await?;
        let (now, _) = versions(&tx).await?;
        let rows = tx
            .query("SELECT version, kind, database_name, name FROM bowman_catalog_log WHERE version > $1 AND version <= $2", &[&since, &now])
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        tx.commit().await?;
        Ok(Changes::from_log(since, now, rows))
    }

    async fn load_tables(&self, tables: &[TableKey]) -> Result<(i64, Vec<TableDef>)> {
        let mut client = self.pool.get().await?;
        let tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await?;
        let (version, _) = versions(&tx).await?;
        let mut out = Vec::new();
        for key in tables {
            out.extend(read_table(&tx, key, false).await?);
        }
        tx.commit().await?;
        Ok((version, out))
    }

    async fn checkpoints(&self, source: &str) -> Result<Vec<Checkpoint>> {
        let client = self.pool.get().await?;
        let rows = client
            .query("SELECT source_partition, source_offset FROM bowman_checkpoints WHERE source = $1 ORDER BY source_partition", &[&source])
            .await?;
        Ok(rows.into_iter().map(|r| Checkpoint { source: source.to_string(), partition: r.get(0), offset: r.get(1) }).collect())
    }

    async fn apply(&self, change: CatalogChange) -> Result<ChangeOutcome> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let outcome = match change.into_transaction() {
            Ok(t) => apply_data(&tx, &t).await?,
            Err(change) => apply_schema(&tx, &change).await?,
        };
        if outcome.applied {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(outcome)
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn register_write(&self, intent: &WriteIntent) -> Result<()> {
        self.register_intent(intent).await
    }

    async fn renew_write(&self, commit: &str, lease_until: i64) -> Result<bool> {
        let sql = "UPDATE bowman_write_intents SET lease_until = $1 WHERE commit_id = $2 AND lease_until > $3";
        Ok(self.run(sql, &[&lease_until, &commit, &now_millis()]).await? > 0)
    }

    async fn abandon_write(&self, commit: &str) -> Result<()> {
        self.run("UPDATE bowman_write_intents SET lease_until = 0 WHERE commit_id = $1", &[&commit]).await?;
        Ok(())
    }

    async fn write_intents(&self) -> Result<Vec<WriteIntent>> {
        self.intents().await
    }

    async fn forget_writes(&self, commits: &[String]) -> Result<()> {
        self.run("DELETE FROM bowman_write_intents WHERE commit_id = ANY($1)", &[&commits]).await?;
        Ok(())
    }

    async fn retired_dirs(&self) -> Result<Vec<RetiredDir>> {
        let rows = self.rows(&format!("SELECT {RETIRED_COLUMNS} FROM bowman_retired_dirs"), &[]).await?;
        Ok(rows.iter().map(retired_row).collect())
    }

    async fn claim_retired_dirs(&self, which: &RetiredClaim, now: i64, claim_until: i64) -> Result<Vec<RetiredDir>> {
        self.claim(which, now, claim_until).await
    }

    async fn forget_retired_dirs(&self, dirs: &[RetiredDir]) -> Result<()> {
        let locations: Vec<&str> = dirs.iter().map(|d| d.location.as_str()).collect();
        let names: Vec<&str> = dirs.iter().map(|d| d.dir.as_str()).collect();
        self.run(
            "DELETE FROM bowman_retired_dirs r USING unnest($1::text[], $2::text[]) AS f(location, dir)
             WHERE r.location = f.location AND r.dir = f.dir",
            &[&locations, &names],
        )
        .await?;
        Ok(())
    }
}
