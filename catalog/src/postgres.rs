use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio_postgres::{Client, Config, NoTls, Transaction};

use crate::error::{CatalogError, Result};
use crate::migrations::{MIGRATIONS, SCHEMA_TABLE, latest_version};
use crate::model::{CatalogState, DatabaseDef, LiveDir, RetiredFile, RoleDef};
use crate::retention::{RetiredClaim, RetiredDir, WriteIntent};
use crate::store::{CatalogChange, CatalogStore, ChangeOutcome, Op, TableRow, assemble, now_millis, plan_change, retired_dirs, retired_files};

/// Advisory lock key that serialises migrations of nodes starting at the same time ("bowman" in ASCII).
const MIGRATION_LOCK: i64 = 0x626f776d616e;

/// A catalog shared by several Bowman nodes in one PostgreSQL database.
///
/// Every change runs in one transaction that first locks the version row, so writers from
/// different nodes are serialised and each sees the others' committed changes before checking its
/// own.
pub struct PostgresStore {
    config: Config,
    description: String,
    client: Mutex<Option<Client>>,
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
        let store = PostgresStore { config, description, client: Mutex::new(None) };
        {
            let mut guard = store.client.lock().await;
            let client = store.connected(&mut guard).await?;
            migrate(client).await?;
        }
        Ok(store)
    }

    /// The live client, reconnecting when the previous connection died (PostgreSQL restarted).
    async fn connected<'a>(&self, slot: &'a mut Option<Client>) -> Result<&'a mut Client> {
        if slot.as_ref().is_none_or(|c| c.is_closed()) {
            let (client, connection) = self.config.connect(NoTls).await.map_err(|e| {
                CatalogError::Store(format!("cannot connect to the catalog database at {}: {e}", self.description))
            })?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "catalog database connection ended");
                }
            });
            *slot = Some(client);
        }
        Ok(slot.as_mut().expect("client just set"))
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

async fn read_state(tx: &Transaction<'_>, for_update: bool) -> Result<CatalogState> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let version: i64 = tx
        .query_one(&format!("SELECT version FROM bowman_catalog_version WHERE id = 1{lock}"), &[])
        .await?
        .get(0);
    let databases = tx
        .query("SELECT name, comment, location, created_at, owner FROM bowman_databases", &[])
        .await?
        .into_iter()
        .map(|r| DatabaseDef { name: r.get(0), comment: r.get(1), location: r.get(2), created_at: r.get(3), owner: r.get(4) })
        .collect();
    let tables = tx
        .query(
            "SELECT t.database_name, t.name, t.kind, t.format, t.location, t.columns, t.partition_columns,
                    t.options, s.options, t.comment, t.created_at, t.tracked, t.owner
             FROM bowman_tables t
             LEFT JOIN bowman_table_secrets s ON s.database_name = t.database_name AND s.name = t.name",
            &[],
        )
        .await?
        .into_iter()
        .map(|r| TableRow {
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
        })
        .collect();
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
                     partition_columns, options, comment, created_at, tracked, owner)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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

const RETIRED_COLUMNS: &str = "location, dir, partition_path, database_name, table_name, retired_at";

fn retired_row(r: &tokio_postgres::Row) -> RetiredDir {
    RetiredDir { location: r.get(0), dir: r.get(1), partition: r.get(2), database: r.get(3), table: r.get(4), retired_at: r.get(5) }
}

/// Retention rows: short statements outside the versioned state. A claim is one
/// `UPDATE ... RETURNING`, so of two nodes claiming at once each row goes to one.
impl PostgresStore {
    async fn run(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> Result<u64> {
        let mut guard = self.client.lock().await;
        let client = self.connected(&mut guard).await?;
        Ok(client.execute(sql, params).await?)
    }

    async fn rows(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> Result<Vec<tokio_postgres::Row>> {
        let mut guard = self.client.lock().await;
        let client = self.connected(&mut guard).await?;
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
        let mut guard = self.client.lock().await;
        let client = self.connected(&mut guard).await?;
        let tx = client.build_transaction().read_only(true).start().await?;
        let state = read_state(&tx, false).await?;
        tx.commit().await?;
        Ok(state)
    }

    async fn version(&self) -> Result<i64> {
        let mut guard = self.client.lock().await;
        let client = self.connected(&mut guard).await?;
        Ok(client.query_one("SELECT version FROM bowman_catalog_version WHERE id = 1", &[]).await?.get(0))
    }

    async fn apply(&self, change: CatalogChange) -> Result<ChangeOutcome> {
        let mut guard = self.client.lock().await;
        let client = self.connected(&mut guard).await?;
        let tx = client.transaction().await?;
        let state = read_state(&tx, true).await?;
        let (ops, dropped_tables) = plan_change(&state, &change)?;
        if ops.is_empty() {
            tx.rollback().await?;
            return Ok(ChangeOutcome { version: state.version, applied: false, dropped_tables, ..Default::default() });
        }
        let retired = retired_dirs(&state, &ops);
        let retired_files = retired_files(&ops);
        for op in &ops {
            execute_op(&tx, op).await?;
        }
        let version = state.version + 1;
        tx.execute("UPDATE bowman_catalog_version SET version = $1 WHERE id = 1", &[&version]).await?;
        tx.commit().await?;
        Ok(ChangeOutcome { version, applied: true, dropped_tables, retired, retired_files })
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
