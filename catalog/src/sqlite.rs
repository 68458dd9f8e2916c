use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::error::{CatalogError, Result};
use crate::migrations::{MIGRATIONS, SCHEMA_TABLE, latest_version};
use crate::model::{CatalogState, Checkpoint, DatabaseDef, Grant, GrantObject, LiveDir, RetiredFile, RoleDef, TableDef};
use crate::retention::{RetiredClaim, RetiredDir, WriteIntent};
use crate::store::{
    CatalogChange, CatalogStore, ChangeOutcome, Changes, LOG_DATA, LOG_KEEP, LOG_SCHEMA, Op, TableKey, TableRow, assemble, now_millis,
    plan_change, plan_transaction, retired_files, trims_log,
};

/// The embedded catalog: one SQLite file in WAL mode with `synchronous=FULL`, so a committed DDL
/// survives `kill -9` and power loss, and an interrupted one leaves nothing behind.
///
/// SQLite calls are short and local, so they run inline behind a mutex rather than on a blocking
/// pool.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| CatalogError::Store(format!("cannot create {}: {e}", parent.display())))?;
            }
        }
        make_private(path)?;
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Deleted and replaced rows are overwritten with zeros, not left in free pages.
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        migrate(&mut conn)?;
        Ok(SqliteStore { path: path.to_path_buf(), conn: Mutex::new(conn) })
    }

    fn with_conn<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().map_err(|_| CatalogError::Store("sqlite connection poisoned".into()))?;
        f(&mut conn)
    }
}

/// Create the catalog file readable by its owner only (0600), or make an existing one so, with
/// its WAL and shared-memory files (SQLite gives those the database file's mode).
fn make_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let err = |e: std::io::Error| CatalogError::Store(format!("cannot make {} private: {e}", path.display()));
    std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path).map_err(err)?;
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        files.push(PathBuf::from(p));
    }
    for file in files {
        match std::fs::metadata(&file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(SCHEMA_TABLE, [])?;
    let current: i64 = tx.query_row("SELECT COALESCE(MAX(version), 0) FROM bowman_schema_migrations", [], |r| r.get(0))?;
    if current > latest_version() {
        return Err(CatalogError::TooNew { found: current, known: latest_version() });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        for stmt in m.statements {
            tx.execute(stmt, [])?;
        }
        tx.execute(
            "INSERT INTO bowman_schema_migrations (version, description, applied_at) VALUES (?1, ?2, ?3)",
            params![m.version, m.description, now_millis()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

const TABLE_COLUMNS: &str = "t.database_name, t.name, t.kind, t.format, t.location, t.columns, t.partition_columns,
     t.options, s.options, t.comment, t.created_at, t.tracked, t.owner, t.data_version
     FROM bowman_tables t
     LEFT JOIN bowman_table_secrets s ON s.database_name = t.database_name AND s.name = t.name";

fn table_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TableRow> {
    Ok(TableRow {
        database: r.get(0)?,
        name: r.get(1)?,
        kind: r.get(2)?,
        format: r.get(3)?,
        location: r.get(4)?,
        columns: r.get(5)?,
        partition_columns: r.get(6)?,
        options: r.get(7)?,
        secret_options: r.get(8)?,
        comment: r.get(9)?,
        created_at: r.get(10)?,
        tracked: r.get::<_, i64>(11)? != 0,
        owner: r.get(12)?,
        data_version: r.get(13)?,
    })
}

/// (log version, schema version).
fn versions(conn: &Connection) -> Result<(i64, i64)> {
    Ok(conn.query_row("SELECT version, schema_version FROM bowman_catalog_version WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// One table with its live and retired entries.
fn read_table(conn: &Connection, (database, name): &TableKey) -> Result<Option<TableDef>> {
    let sql = format!("SELECT {TABLE_COLUMNS} WHERE t.database_name = ?1 AND t.name = ?2");
    let Some(row) = conn.query_row(&sql, params![database, name], table_row).optional()? else { return Ok(None) };
    let mut def = row.decode()?;
    let mut stmt = conn.prepare("SELECT dir, partition_path FROM bowman_live_dirs WHERE database_name = ?1 AND table_name = ?2")?;
    def.live = stmt
        .query_map(params![database, name], |r| Ok(LiveDir { dir: r.get(0)?, partition: r.get(1)? }))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = conn.prepare("SELECT path, retired_at FROM bowman_retired_files WHERE database_name = ?1 AND table_name = ?2")?;
    def.retired = stmt
        .query_map(params![database, name], |r| Ok(RetiredFile { path: r.get(0)?, retired_at: r.get(1)? }))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    def.live.sort();
    def.retired.sort();
    Ok(Some(def))
}

/// Take the next log version and record what it changed (SQLite has one writer at a time).
fn log_commit(tx: &rusqlite::Transaction<'_>, kind: &str, tables: &[TableKey]) -> Result<i64> {
    let schema = if kind == LOG_SCHEMA { ", schema_version = version + 1" } else { "" };
    tx.execute(&format!("UPDATE bowman_catalog_version SET version = version + 1{schema} WHERE id = 1"), [])?;
    let (version, _) = versions(tx)?;
    let now = now_millis();
    let schema_row = [(String::new(), String::new())];
    for (database, name) in if kind == LOG_SCHEMA { &schema_row[..] } else { tables } {
        tx.execute(
            "INSERT INTO bowman_catalog_log (version, kind, database_name, name, committed_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![version, kind, database, name, now],
        )?;
    }
    if trims_log(version) {
        tx.execute("DELETE FROM bowman_catalog_log WHERE version <= ?1", params![version - LOG_KEEP])?;
    }
    Ok(version)
}

fn read_state(conn: &Connection) -> Result<CatalogState> {
    let version = versions(conn)?;
    let mut stmt = conn.prepare("SELECT name, comment, location, created_at, owner FROM bowman_databases")?;
    let databases = stmt
        .query_map([], |r| {
            Ok(DatabaseDef { name: r.get(0)?, comment: r.get(1)?, location: r.get(2)?, created_at: r.get(3)?, owner: r.get(4)? })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = conn.prepare(&format!("SELECT {TABLE_COLUMNS}"))?;
    let tables = stmt.query_map([], table_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = conn.prepare("SELECT database_name, table_name, dir, partition_path FROM bowman_live_dirs")?;
    let live = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, LiveDir { dir: r.get(2)?, partition: r.get(3)? })))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = conn.prepare("SELECT database_name, table_name, path, retired_at FROM bowman_retired_files")?;
    let retired = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, RetiredFile { path: r.get(2)?, retired_at: r.get(3)? })))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = conn.prepare("SELECT name, password_hash, superuser, can_login, create_role, create_db FROM bowman_users")?;
    let users = stmt
        .query_map([], |r| {
            let role = RoleDef {
                name: r.get(0)?,
                superuser: r.get::<_, i64>(2)? != 0,
                login: r.get::<_, i64>(3)? != 0,
                create_role: r.get::<_, i64>(4)? != 0,
                create_db: r.get::<_, i64>(5)? != 0,
            };
            Ok((role, r.get(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = conn.prepare("SELECT object_kind, database_name, object_name, grantee, privilege, grantor, grant_option FROM bowman_grants")?;
    let grants = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get::<_, i64>(6)? != 0))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let grants = decode_grants(grants)?;
    let mut stmt = conn.prepare("SELECT name, kind, options, secret_options, created_at, owner FROM bowman_functions")?;
    let functions = stmt
        .query_map([], |r| {
            Ok(crate::store::FunctionRow {
                name: r.get(0)?,
                kind: r.get(1)?,
                options: r.get(2)?,
                secret_options: r.get(3)?,
                created_at: r.get(4)?,
                owner: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = conn.prepare("SELECT database_name, name, query, query_database, columns, comment, created_at, owner FROM bowman_views")?;
    let views = stmt
        .query_map([], |r| {
            Ok(crate::store::ViewRow {
                database: r.get(0)?,
                name: r.get(1)?,
                query: r.get(2)?,
                query_database: r.get(3)?,
                columns: r.get(4)?,
                comment: r.get(5)?,
                created_at: r.get(6)?,
                owner: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    assemble(version, databases, tables, live, retired, users, functions, views, grants)
}

fn execute_op(tx: &rusqlite::Transaction<'_>, op: &Op) -> Result<()> {
    match op {
        Op::InsertDatabase(d) => {
            tx.execute(
                "INSERT INTO bowman_databases (name, comment, location, created_at, owner) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![d.name, d.comment, d.location, d.created_at, d.owner],
            )?;
        }
        Op::DeleteDatabase(name) => {
            tx.execute("DELETE FROM bowman_databases WHERE name = ?1", params![name])?;
        }
        Op::InsertTable(def) => {
            let row = TableRow::encode(def)?;
            tx.execute(
                "INSERT INTO bowman_tables (database_name, name, kind, format, location, columns,
                     partition_columns, options, comment, created_at, tracked, owner, data_version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    row.database,
                    row.name,
                    row.kind,
                    row.format,
                    row.location,
                    row.columns,
                    row.partition_columns,
                    row.options,
                    row.comment,
                    row.created_at,
                    row.tracked as i64,
                    row.owner,
                    row.data_version
                ],
            )?;
            tx.execute(
                "INSERT INTO bowman_table_secrets (database_name, name, options) VALUES (?1, ?2, ?3)",
                params![row.database, row.name, row.secret_options],
            )?;
            for dir in &def.live {
                execute_op(tx, &Op::InsertLiveDir { database: def.database.clone(), name: def.name.clone(), dir: dir.clone() })?;
            }
            for file in &def.retired {
                execute_op(tx, &Op::InsertRetiredFile { database: def.database.clone(), name: def.name.clone(), file: file.clone() })?;
            }
        }
        Op::DeleteTable { database, name } => {
            tx.execute(
                "DELETE FROM bowman_live_dirs WHERE database_name = ?1 AND table_name = ?2",
                params![database, name],
            )?;
            tx.execute(
                "DELETE FROM bowman_retired_files WHERE database_name = ?1 AND table_name = ?2",
                params![database, name],
            )?;
            tx.execute(
                "DELETE FROM bowman_table_secrets WHERE database_name = ?1 AND name = ?2",
                params![database, name],
            )?;
            tx.execute("DELETE FROM bowman_tables WHERE database_name = ?1 AND name = ?2", params![database, name])?;
        }
        Op::InsertUser { role, password_hash } => {
            tx.execute(
                "INSERT INTO bowman_users (name, password_hash, created_at, superuser, can_login, create_role, create_db)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    role.name,
                    password_hash,
                    crate::store::now_millis(),
                    role.superuser as i64,
                    role.login as i64,
                    role.create_role as i64,
                    role.create_db as i64
                ],
            )?;
        }
        Op::InsertGrant(g) => {
            let (kind, database, name) = g.object.key();
            tx.execute(
                "INSERT INTO bowman_grants (object_kind, database_name, object_name, grantee, privilege, grantor, grant_option)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![kind, database, name, g.grantee, g.privilege, g.grantor, g.grant_option as i64],
            )?;
        }
        Op::DeleteGrant { object, grantee, privilege } => {
            let (kind, database, name) = object.key();
            tx.execute(
                "DELETE FROM bowman_grants WHERE object_kind = ?1 AND database_name = ?2 AND object_name = ?3
                     AND grantee = ?4 AND privilege = ?5",
                params![kind, database, name, grantee, privilege],
            )?;
        }
        Op::DeleteUser(name) => {
            tx.execute("DELETE FROM bowman_users WHERE name = ?1", params![name])?;
        }
        Op::InsertFunction(def) => {
            let row = crate::store::FunctionRow::encode(def)?;
            tx.execute(
                "INSERT INTO bowman_functions (name, kind, options, secret_options, created_at, owner) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![row.name, row.kind, row.options, row.secret_options, row.created_at, row.owner],
            )?;
        }
        Op::DeleteFunction(name) => {
            tx.execute("DELETE FROM bowman_functions WHERE name = ?1", params![name])?;
        }
        Op::InsertView(def) => {
            let row = crate::store::ViewRow::encode(def)?;
            tx.execute(
                "INSERT INTO bowman_views (database_name, name, query, query_database, columns, comment, created_at, owner)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![row.database, row.name, row.query, row.query_database, row.columns, row.comment, row.created_at, row.owner],
            )?;
        }
        Op::DeleteView { database, name } => {
            tx.execute("DELETE FROM bowman_views WHERE database_name = ?1 AND name = ?2", params![database, name])?;
        }
        Op::SetTableSecrets { database, name, options } => {
            tx.execute("DELETE FROM bowman_table_secrets WHERE database_name = ?1 AND name = ?2", params![database, name])?;
            tx.execute(
                "INSERT INTO bowman_table_secrets (database_name, name, options) VALUES (?1, ?2, ?3)",
                params![database, name, options],
            )?;
        }
        Op::SetFunctionSecrets { name, options } => {
            tx.execute("UPDATE bowman_functions SET secret_options = ?1 WHERE name = ?2", params![options, name])?;
        }
        Op::PutCheckpoint(c) => {
            tx.execute("DELETE FROM bowman_checkpoints WHERE source = ?1 AND source_partition = ?2", params![c.source, c.partition])?;
            tx.execute(
                "INSERT INTO bowman_checkpoints (source, source_partition, source_offset, updated_at) VALUES (?1, ?2, ?3, ?4)",
                params![c.source, c.partition, c.offset, now_millis()],
            )?;
        }
        Op::InsertLiveDir { database, name, dir } => {
            tx.execute(
                "INSERT INTO bowman_live_dirs (database_name, table_name, dir, partition_path) VALUES (?1, ?2, ?3, ?4)",
                params![database, name, dir.dir, dir.partition],
            )?;
        }
        Op::InsertRetiredFile { database, name, file } => {
            tx.execute(
                "INSERT INTO bowman_retired_files (database_name, table_name, path, retired_at) VALUES (?1, ?2, ?3, ?4)",
                params![database, name, file.path, file.retired_at],
            )?;
        }
        Op::DeleteRetiredFile { database, name, path } => {
            tx.execute(
                "DELETE FROM bowman_retired_files WHERE database_name = ?1 AND table_name = ?2 AND path = ?3",
                params![database, name, path],
            )?;
        }
        Op::DeleteLiveDir { database, name, dir } => {
            tx.execute(
                "DELETE FROM bowman_live_dirs WHERE database_name = ?1 AND table_name = ?2 AND dir = ?3",
                params![database, name, dir],
            )?;
        }
        Op::InsertRetiredDir(d) => {
            tx.execute(
                "INSERT INTO bowman_retired_dirs (location, dir, partition_path, database_name, table_name, retired_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (location, dir) DO NOTHING",
                params![d.location, d.dir, d.partition, d.database, d.table, d.retired_at],
            )?;
        }
        Op::DeleteWriteIntent { commit } => {
            tx.execute("DELETE FROM bowman_write_intents WHERE commit_id = ?1", params![commit])?;
        }
    }
    Ok(())
}

const RETIRED_COLUMNS: &str = "location, dir, partition_path, database_name, table_name, retired_at";

fn retired_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RetiredDir> {
    Ok(RetiredDir { location: r.get(0)?, dir: r.get(1)?, partition: r.get(2)?, database: r.get(3)?, table: r.get(4)?, retired_at: r.get(5)? })
}

/// Retention rows: short statements outside the versioned state.
impl SqliteStore {
    fn claim(conn: &mut Connection, which: &RetiredClaim, now: i64, claim_until: i64) -> Result<Vec<RetiredDir>> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut claimed = Vec::new();
        match which {
            RetiredClaim::RetiredBefore(before) => {
                let mut stmt = tx.prepare(&format!(
                    "UPDATE bowman_retired_dirs SET claimed_until = ?1 WHERE retired_at <= ?2 AND claimed_until <= ?3 RETURNING {RETIRED_COLUMNS}"
                ))?;
                claimed.extend(stmt.query_map(params![claim_until, before, now], retired_row)?.collect::<rusqlite::Result<Vec<_>>>()?);
            }
            RetiredClaim::Dirs { location, dirs } => {
                let mut stmt = tx.prepare(&format!(
                    "UPDATE bowman_retired_dirs SET claimed_until = ?1 WHERE location = ?2 AND dir = ?3 AND claimed_until <= ?4 RETURNING {RETIRED_COLUMNS}"
                ))?;
                for dir in dirs {
                    claimed.extend(stmt.query_map(params![claim_until, location, dir, now], retired_row)?.collect::<rusqlite::Result<Vec<_>>>()?);
                }
            }
        }
        tx.commit()?;
        Ok(claimed)
    }
}

#[async_trait]
impl CatalogStore for SqliteStore {
    async fn load(&self) -> Result<CatalogState> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            let state = read_state(&tx)?;
            tx.commit()?;
            Ok(state)
        })
    }

    async fn version(&self) -> Result<i64> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row("SELECT version FROM bowman_catalog_version WHERE id = 1", [], |r| r.get(0))
                .optional()?
                .unwrap_or(0))
        })
    }

    async fn changes_since(&self, since: i64) -> Result<Changes> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            let (now, _) = versions(&tx)?;
            if now == since {
                return Ok(Changes { version: now, ..Default::default() });
            }
            let mut stmt = tx.prepare("SELECT version, kind, database_name, name FROM bowman_catalog_log WHERE version > ?1 AND version <= ?2")?;
            let rows = stmt
                .query_map(params![since, now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            drop(stmt);
            tx.commit()?;
            Ok(Changes::from_log(since, now, rows))
        })
    }

    async fn load_tables(&self, tables: &[TableKey]) -> Result<(i64, Vec<TableDef>)> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            let (version, _) = versions(&tx)?;
            let mut out = Vec::new();
            for key in tables {
                out.extend(read_table(&tx, key)?);
            }
            tx.commit()?;
            Ok((version, out))
        })
    }

    async fn checkpoints(&self, source: &str) -> Result<Vec<Checkpoint>> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare("SELECT source_partition, source_offset FROM bowman_checkpoints WHERE source = ?1 ORDER BY source_partition")?;
            let rows = stmt
                .query_map(params![source], |r| Ok(Checkpoint { source: source.to_string(), partition: r.get(0)?, offset: r.get(1)? }))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    async fn apply(&self, change: CatalogChange) -> Result<ChangeOutcome> {
        self.with_conn(|conn| {
            // IMMEDIATE takes the write lock up front, so the checks below see the latest state.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let secrets = matches!(change, CatalogChange::ReplaceSecrets { .. });
            let outcome = match change.into_transaction() {
                Ok(t) => apply_data(&tx, &t)?,
                Err(change) => apply_schema(&tx, &change)?,
            };
            if !outcome.applied {
                return Ok(outcome);
            }
            tx.commit()?;
            if secrets {
                // The replaced plain-text secrets must not linger in the write-ahead log either.
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            }
            Ok(outcome)
        })
    }

    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    async fn register_write(&self, i: &WriteIntent) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO bowman_write_intents (commit_id, database_name, table_name, node, started_at, lease_until)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![i.commit, i.database, i.table, i.node, i.started_at, i.lease_until],
            )?;
            Ok(())
        })
    }

    async fn renew_write(&self, commit: &str, lease_until: i64) -> Result<bool> {
        self.with_conn(|conn| {
            let n = conn.execute(
                "UPDATE bowman_write_intents SET lease_until = ?1 WHERE commit_id = ?2 AND lease_until > ?3",
                params![lease_until, commit, now_millis()],
            )?;
            Ok(n > 0)
        })
    }

    async fn abandon_write(&self, commit: &str) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute("UPDATE bowman_write_intents SET lease_until = 0 WHERE commit_id = ?1", params![commit])?;
            Ok(())
        })
    }

    async fn write_intents(&self) -> Result<Vec<WriteIntent>> {
        self.with_conn(|conn| {
            let mut stmt =
                conn.prepare("SELECT commit_id, database_name, table_name, node, started_at, lease_until FROM bowman_write_intents")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(WriteIntent { commit: r.get(0)?, database: r.get(1)?, table: r.get(2)?, node: r.get(3)?, started_at: r.get(4)?, lease_until: r.get(5)? })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    async fn forget_writes(&self, commits: &[String]) -> Result<()> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            for c in commits {
                tx.execute("DELETE FROM bowman_write_intents WHERE commit_id = ?1", params![c])?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    async fn retired_dirs(&self) -> Result<Vec<RetiredDir>> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(&format!("SELECT {RETIRED_COLUMNS} FROM bowman_retired_dirs"))?;
            let rows = stmt.query_map([], retired_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    async fn claim_retired_dirs(&self, which: &RetiredClaim, now: i64, claim_until: i64) -> Result<Vec<RetiredDir>> {
        self.with_conn(|conn| Self::claim(conn, which, now, claim_until))
    }

    async fn forget_retired_dirs(&self, dirs: &[RetiredDir]) -> Result<()> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            for d in dirs {
                tx.execute("DELETE FROM bowman_retired_dirs WHERE location = ?1 AND dir = ?2", params![d.location, d.dir])?;
            }
            tx.commit()?;
            Ok(())
        })
    }
}

/// DDL, checked against the whole catalog.
fn apply_schema(tx: &rusqlite::Transaction<'_>, change: &CatalogChange) -> Result<ChangeOutcome> {
    let state = read_state(tx)?;
    let (ops, dropped_tables) = plan_change(&state, change)?;
    if ops.is_empty() {
        return Ok(ChangeOutcome { version: state.version, applied: false, dropped_tables, ..Default::default() });
    }
    for op in &ops {
        execute_op(tx, op)?;
    }
    let version = log_commit(tx, LOG_SCHEMA, &[])?;
    Ok(ChangeOutcome { version, applied: true, dropped_tables, retired_files: retired_files(&ops), ..Default::default() })
}

/// A data transaction: reads only the tables it names.
fn apply_data(tx: &rusqlite::Transaction<'_>, t: &crate::store::Transaction) -> Result<ChangeOutcome> {
    let mut tables = std::collections::BTreeMap::new();
    for key in t.tables() {
        if let Some(def) = read_table(tx, &key)? {
            tables.insert(key, def);
        }
    }
    let plan = plan_transaction(tables, t)?;
    if plan.ops.is_empty() {
        return Ok(plan.outcome(versions(tx)?.0, false));
    }
    for op in &plan.ops {
        execute_op(tx, op)?;
    }
    for (database, name) in &plan.bumped {
        tx.execute("UPDATE bowman_tables SET data_version = data_version + 1 WHERE database_name = ?1 AND name = ?2", params![database, name])?;
    }
    let touched: Vec<TableKey> = plan.touched.iter().cloned().collect();
    let version = log_commit(tx, LOG_DATA, &touched)?;
    Ok(plan.outcome(version, true))
}

/// Grant rows as both stores read them: (kind, database, name, grantee, privilege, grantor, option).
pub(crate) type GrantRow = (String, String, String, String, String, String, bool);

pub(crate) fn decode_grants(rows: Vec<GrantRow>) -> Result<Vec<Grant>> {
    rows.into_iter()
        .map(|(kind, database, name, grantee, privilege, grantor, grant_option)| {
            let object = GrantObject::from_key(&kind, database, name)
                .ok_or_else(|| CatalogError::Corrupt(format!("a grant on an object of kind {kind:?}")))?;
            Ok(Grant { object, grantee, privilege, grantor, grant_option })
        })
        .collect()
}
