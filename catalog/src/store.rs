use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;

use crate::error::{CatalogError, Result};
use crate::model::{CatalogState, Checkpoint, ColumnDef, DatabaseDef, DatabaseEntry, FunctionDef, Grant, GrantObject, LiveDir, PUBLIC_ROLE, RetiredFile, RoleDef, TableDef, TableKind, ViewDef};

/// The database every session starts in, as in Spark and Hive.
pub const DEFAULT_DATABASE: &str = "default";

/// PostgreSQL's name for the default schema. PostgreSQL clients and tools (psql, DBeaver,
/// Metabase, dbt profiles, `search_path`) assume it exists, so `public` is a second name of the
/// default database: `public.t` is `default.t`, and the catalog never stores `public`.
pub const PUBLIC_SCHEMA: &str = "public";

/// The stored name of a database: `public` is the default database.
pub fn canonical_database(name: &str) -> &str {
    if name == PUBLIC_SCHEMA { DEFAULT_DATABASE } else { name }
}

/// One atomic change to the catalog.
#[derive(Debug, Clone)]
pub enum CatalogChange {
    CreateDatabase { def: DatabaseDef, if_not_exists: bool },
    DropDatabase { name: String, if_exists: bool, cascade: bool },
    CreateTable { def: TableDef, if_not_exists: bool },
    DropTable { database: String, name: String, if_exists: bool },
    /// `ALTER TABLE|VIEW ... RENAME TO`: the same table (data, live directories, secrets) or
    /// view under a new name, possibly in another database. PostgreSQL (and dbt) rename views
    /// with ALTER TABLE too.
    RenameTable { database: String, name: String, new_database: String, new_name: String },
    /// `CREATE [OR REPLACE] VIEW [IF NOT EXISTS] v AS ...`. Views and tables share one
    /// namespace; OR REPLACE replaces a view, never a table.
    CreateView { def: ViewDef, or_replace: bool, if_not_exists: bool },
    /// `DROP VIEW [IF EXISTS] v`: fails on a table, as DROP TABLE fails on a view.
    DropView { database: String, name: String, if_exists: bool },
    /// `CREATE USER name PASSWORD '...'` (the caller hashes the password).
    CreateUser { name: String, password_hash: String, if_not_exists: bool },
    /// `ALTER USER name PASSWORD '...'`.
    SetUserPassword { name: String, password_hash: String },
    DropUser { name: String, if_exists: bool },
    /// `CREATE ROLE|USER name [WITH] attributes [PASSWORD '...']` (the caller hashes the
    /// password; `None` leaves the role without one, so it cannot log in).
    CreateRole { role: RoleDef, password_hash: Option<String>, if_not_exists: bool },
    /// `ALTER ROLE|USER name attributes [PASSWORD '...']`: the role's attributes become
    /// `role`'s; the password changes only when `password_hash` is set.
    AlterRole { role: RoleDef, password_hash: Option<String> },
    /// `GRANT ... TO ...`: add privileges (or memberships); granting what is held already
    /// only adds a grant option.
    Grant { grants: Vec<Grant> },
    /// `REVOKE ... FROM ...`: remove the matching privileges (grantor ignored); with
    /// `grant_option_only`, only their grant option (`REVOKE GRANT OPTION FOR`).
    Revoke { grants: Vec<Grant>, grant_option_only: bool },
    /// `CREATE [OR REPLACE] FUNCTION name USING kind OPTIONS (...)`.
    CreateFunction { def: FunctionDef, or_replace: bool, if_not_exists: bool },
    DropFunction { name: String, if_exists: bool },
    /// Make a write to a tracked table visible: add its commit directories and, for an
    /// overwrite, retire the ones it replaces — all in one transaction.
    ///
    /// `expect`, when set, is what the writer read of the partitions it replaces: if another
    /// write changed them since, the commit fails with [`CatalogError::Conflict`] instead of
    /// losing that write (OPTIMIZE rewrites what it read).
    ///
    /// External file tables also retire files other engines wrote: `retire_files` are the
    /// paths (relative to the location) of such files in the replaced partitions, and every
    /// live entry the write replaces is retired as a file too (there `dir` is a file path).
    CommitWrite {
        database: String,
        name: String,
        replace: Replace,
        add: Vec<LiveDir>,
        expect: Option<Vec<LiveDir>>,
        retire_files: Vec<String>,
    },
    /// Forget retired files of an external table once they are deleted.
    ForgetRetired { database: String, name: String, paths: Vec<String> },
    /// Store these tables' and functions' secret options as given (already encrypted): how the
    /// catalog encrypts plain-text secrets of older catalogs and re-encrypts after a key rotation.
    /// Entries gone meanwhile are skipped.
    ReplaceSecrets { tables: Vec<(String, String, BTreeMap<String, String>)>, functions: Vec<(String, BTreeMap<String, String>)> },
    /// Several data mutations (writes to several tables, source checkpoints) committed as one,
    /// or not at all; see [`Transaction`]. `CommitWrite` and `ForgetRetired` are one-mutation
    /// transactions.
    Transaction(Transaction),
}

impl CatalogChange {
    /// The same change with `public` spelled as the default database it names, so the store
    /// only ever records `default`.
    pub fn canonical(self) -> Self {
        fn c(name: String) -> String {
            canonical_database(&name).to_string()
        }
        use CatalogChange as C;
        match self {
            C::CreateDatabase { mut def, if_not_exists } => {
                def.name = c(def.name);
                C::CreateDatabase { def, if_not_exists }
            }
            C::DropDatabase { name, if_exists, cascade } => C::DropDatabase { name: c(name), if_exists, cascade },
            C::CreateTable { mut def, if_not_exists } => {
                def.database = c(def.database);
                C::CreateTable { def, if_not_exists }
            }
            C::DropTable { database, name, if_exists } => C::DropTable { database: c(database), name, if_exists },
            C::RenameTable { database, name, new_database, new_name } => {
                C::RenameTable { database: c(database), name, new_database: c(new_database), new_name }
            }
            C::CreateView { mut def, or_replace, if_not_exists } => {
                def.database = c(def.database);
                def.query_database = c(def.query_database);
                C::CreateView { def, or_replace, if_not_exists }
            }
            C::DropView { database, name, if_exists } => C::DropView { database: c(database), name, if_exists },
            C::CommitWrite { database, name, replace, add, expect, retire_files } => {
                C::CommitWrite { database: c(database), name, replace, add, expect, retire_files }
            }
            C::ForgetRetired { database, name, paths } => C::ForgetRetired { database: c(database), name, paths },
            C::Transaction(t) => C::Transaction(t.canonical()),
            C::Grant { grants } => C::Grant { grants: grants.into_iter().map(canonical_grant).collect() },
            C::Revoke { grants, grant_option_only } => {
                C::Revoke { grants: grants.into_iter().map(canonical_grant).collect(), grant_option_only }
            }
            other => other,
        }
    }
}

impl CatalogChange {
    /// The change as a data transaction, when it is one (it then locks only the tables it
    /// names and moves their data versions, not the schema version); else the change itself.
    pub(crate) fn into_transaction(self) -> std::result::Result<Transaction, CatalogChange> {
        match self {
            CatalogChange::Transaction(t) => Ok(t),
            CatalogChange::CommitWrite { database, name, replace, add, expect, retire_files } => {
                Ok(Transaction::default().with(Mutation::CommitWrite { database, name, replace, add, expect, retire_files }))
            }
            CatalogChange::ForgetRetired { database, name, paths } => {
                Ok(Transaction::default().with(Mutation::ForgetRetired { database, name, paths }))
            }
            other => Err(other),
        }
    }
}

/// A table's name as the catalog keys it: (database, table).
pub type TableKey = (String, String);

/// One data mutation of a [`Transaction`].
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Make a write visible: add its live directories (or files) and, for an overwrite,
    /// retire what it replaces. The fields mean what they mean in
    /// [`CatalogChange::CommitWrite`]; `expect` there compares live directories, while a
    /// [`Transaction`]'s [`Expect`] compares data versions.
    CommitWrite { database: String, name: String, replace: Replace, add: Vec<LiveDir>, expect: Option<Vec<LiveDir>>, retire_files: Vec<String> },
    /// Forget retired files of an external table once they are deleted. Readers see the same
    /// data before and after, so the table's data version stays.
    ForgetRetired { database: String, name: String, paths: Vec<String> },
    /// Record how far a source has been read, with the data read from it.
    Checkpoint(Checkpoint),
}

/// What a transaction read: the data version of a table when the statement planned. If a
/// commit moved it since, the transaction fails with [`CatalogError::Conflict`] (SQLSTATE
/// 40001) rather than replacing data it never saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub database: String,
    pub name: String,
    pub data_version: i64,
}

/// Mutations committed in one catalog transaction, checked against expectations.
///
/// The store locks only the rows of the tables the transaction names (mutations and
/// expectations), reads only those tables, and moves the data version of each table whose
/// live data changed, so commits to different tables do not wait for each other and other
/// nodes reload only those tables.
///
/// ```ignore
/// catalog.commit(Transaction::default()
///     .with(Mutation::CommitWrite { database, name, replace, add, expect: None, retire_files })
///     .expecting(&def.database, &def.name, def.data_version)).await?;
/// ```
#[derive(Debug, Clone, Default)]
pub struct Transaction {
    pub mutations: Vec<Mutation>,
    pub expect: Vec<Expect>,
}

impl Transaction {
    pub fn with(mut self, mutation: Mutation) -> Self {
        self.mutations.push(mutation);
        self
    }

    /// Fail the transaction unless `database.name` is still at `data_version`.
    pub fn expecting(mut self, database: &str, name: &str, data_version: i64) -> Self {
        self.expect.push(Expect { database: database.to_string(), name: name.to_string(), data_version });
        self
    }

    /// The tables the transaction locks, in the order every writer locks them (so two
    /// transactions over the same tables never deadlock).
    pub fn tables(&self) -> BTreeSet<TableKey> {
        let mut keys: BTreeSet<TableKey> = self.expect.iter().map(|e| (e.database.clone(), e.name.clone())).collect();
        for m in &self.mutations {
            match m {
                Mutation::CommitWrite { database, name, .. } | Mutation::ForgetRetired { database, name, .. } => {
                    keys.insert((database.clone(), name.clone()));
                }
                Mutation::Checkpoint(_) => {}
            }
        }
        keys
    }

    fn canonical(self) -> Self {
        let c = |name: String| canonical_database(&name).to_string();
        let mutations = self
            .mutations
            .into_iter()
            .map(|m| match m {
                Mutation::CommitWrite { database, name, replace, add, expect, retire_files } => {
                    Mutation::CommitWrite { database: c(database), name, replace, add, expect, retire_files }
                }
                Mutation::ForgetRetired { database, name, paths } => Mutation::ForgetRetired { database: c(database), name, paths },
                other => other,
            })
            .collect();
        let expect = self.expect.into_iter().map(|e| Expect { database: c(e.database), ..e }).collect();
        Transaction { mutations, expect }
    }
}

fn canonical_grant(mut g: Grant) -> Grant {
    g.object = match g.object {
        GrantObject::Table { database, name } => GrantObject::Table { database: canonical_database(&database).to_string(), name },
        GrantObject::Database(d) => GrantObject::Database(canonical_database(&d).to_string()),
        other => other,
    };
    g
}

/// What an overwrite replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replace {
    /// An append: nothing.
    Nothing,
    /// These partitions (paths such as `dt=2018-03-05`).
    Partitions(Vec<String>),
    /// Every partition.
    All,
}

/// What a change did.
#[derive(Debug, Clone, Default)]
pub struct ChangeOutcome {
    /// Store version after the change.
    pub version: i64,
    /// False when `IF [NOT] EXISTS` turned the change into a no-op.
    pub applied: bool,
    /// Tables removed by the change (so the caller can delete the data of managed ones).
    pub dropped_tables: Vec<TableDef>,
    /// Commit directories a CommitWrite retired (deleted later, once readers are done).
    pub retired: Vec<LiveDir>,
    /// Files of an external table a CommitWrite retired (deleted later, then forgotten).
    pub retired_files: Vec<String>,
    /// For a data transaction: each table whose data changed, with its new data version and
    /// what the commit retired there (`retired` and `retired_files` are these put together).
    pub committed: Vec<Committed>,
}

/// What a data transaction did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub database: String,
    pub name: String,
    /// The table's data version after the commit.
    pub data_version: i64,
    pub retired: Vec<LiveDir>,
    pub retired_files: Vec<String>,
}

/// What changed in the store after a version a node holds ([`CatalogStore::changes_since`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// The store's version now.
    pub version: i64,
    /// DDL happened (or the log no longer reaches back that far): reload the whole catalog.
    pub schema: bool,
    /// Tables data commits touched, each with the last version that touched it.
    pub tables: BTreeMap<TableKey, i64>,
}

impl Changes {
    /// Read the log rows (version, kind, database, name) after `since`, up to `now`. The
    /// versions of a complete log are every number in `since+1..=now` (each commit takes the
    /// next one while holding the version row); anything else means trimmed entries.
    pub(crate) fn from_log(since: i64, now: i64, rows: Vec<(i64, String, String, String)>) -> Self {
        let mut changes = Changes { version: now, ..Default::default() };
        if now == since {
            return changes;
        }
        let versions: BTreeSet<i64> = rows.iter().map(|r| r.0).collect();
        let complete = since < now
            && versions.len() as i64 == now - since
            && versions.first() == Some(&(since + 1))
            && versions.last() == Some(&now);
        changes.schema = !complete;
        for (version, kind, database, name) in rows {
            if kind == LOG_DATA {
                let v = changes.tables.entry((database, name)).or_insert(version);
                *v = (*v).max(version);
            } else {
                changes.schema = true;
            }
        }
        changes
    }
}

/// Log kinds: a data commit (one row per table), or DDL (one row, no table).
pub(crate) const LOG_DATA: &str = "data";
pub(crate) const LOG_SCHEMA: &str = "schema";

/// How many log entries the stores keep: a node further behind reloads the whole catalog.
pub(crate) const LOG_KEEP: i64 = 10_000;

/// Whether the commit at `version` also trims the log (now and then, not on every commit).
pub(crate) fn trims_log(version: i64) -> bool {
    version % 256 == 0
}

/// A primitive write a store performs inside its transaction.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    InsertDatabase(DatabaseDef),
    DeleteDatabase(String),
    InsertTable(TableDef),
    DeleteTable { database: String, name: String },
    InsertLiveDir { database: String, name: String, dir: LiveDir },
    DeleteLiveDir { database: String, name: String, dir: String },
    InsertRetiredFile { database: String, name: String, file: RetiredFile },
    DeleteRetiredFile { database: String, name: String, path: String },
    InsertUser { role: RoleDef, password_hash: String },
    DeleteUser(String),
    InsertGrant(Grant),
    DeleteGrant { object: GrantObject, grantee: String, privilege: String },
    InsertFunction(FunctionDef),
    DeleteFunction(String),
    InsertView(ViewDef),
    DeleteView { database: String, name: String },
    /// Replace a table's stored secret options (JSON text).
    SetTableSecrets { database: String, name: String, options: String },
    /// Replace a function's stored secret options (JSON text).
    SetFunctionSecrets { name: String, options: String },
    /// A commit directory an overwrite retired, for the sweeper.
    InsertRetiredDir(crate::retention::RetiredDir),
    /// The write intent of a commit that became live (absent ones are fine).
    DeleteWriteIntent { commit: String },
    /// Set a source's checkpoint (insert or replace).
    PutCheckpoint(Checkpoint),
}

/// A versioned, transactional home for the catalog.
///
/// Implementations apply each [`CatalogChange`] in one transaction that also bumps the store's
/// version, serialised against every other writer (other Bowman nodes included), so a reader that
/// sees version `v` sees every change up to `v` and nothing after it.
#[async_trait]
pub trait CatalogStore: Send + Sync + std::fmt::Debug {
    /// The whole catalog at the store's current version.
    async fn load(&self) -> Result<CatalogState>;
    /// The store's current version: cheap, used to decide whether a snapshot is stale.
    async fn version(&self) -> Result<i64>;
    /// What changed after `version`, from the catalog's log.
    async fn changes_since(&self, version: i64) -> Result<Changes>;
    /// These tables as they are now (those that still exist), with the store version they were
    /// read at.
    async fn load_tables(&self, tables: &[TableKey]) -> Result<(i64, Vec<TableDef>)>;
    /// A source's checkpoints, by partition.
    async fn checkpoints(&self, source: &str) -> Result<Vec<Checkpoint>>;
    /// Validate `change` against the current contents and apply it atomically.
    async fn apply(&self, change: CatalogChange) -> Result<ChangeOutcome>;
    /// A human-readable description, without credentials.
    fn describe(&self) -> String;
    /// Whether other Bowman servers may use this store too (so their readers are not visible here).
    fn is_shared(&self) -> bool {
        false
    }

    // Retention (see `crate::retention`): rows outside the versioned state, so they move no
    // catalog version and no reader reloads for them.
    async fn register_write(&self, intent: &crate::retention::WriteIntent) -> Result<()>;
    /// Extend a live intent's lease; false when it is gone or already expired.
    async fn renew_write(&self, commit: &str, lease_until: i64) -> Result<bool>;
    /// End an intent's lease now.
    async fn abandon_write(&self, commit: &str) -> Result<()>;
    async fn write_intents(&self) -> Result<Vec<crate::retention::WriteIntent>>;
    async fn forget_writes(&self, commits: &[String]) -> Result<()>;
    async fn retired_dirs(&self) -> Result<Vec<crate::retention::RetiredDir>>;
    /// Atomically mark unclaimed (or lapsed) matching rows as claimed until `claim_until` and
    /// return them.
    async fn claim_retired_dirs(
        &self,
        which: &crate::retention::RetiredClaim,
        now: i64,
        claim_until: i64,
    ) -> Result<Vec<crate::retention::RetiredDir>>;
    async fn forget_retired_dirs(&self, dirs: &[crate::retention::RetiredDir]) -> Result<()>;
}

/// Check `change` against `state` and turn it into primitive writes. Shared by every store, so
/// both enforce exactly the same rules.
pub(crate) fn plan_change(state: &CatalogState, change: &CatalogChange) -> Result<(Vec<Op>, Vec<TableDef>)> {
    let mut ops = Vec::new();
    let mut dropped = Vec::new();
    if let CatalogChange::ReplaceSecrets { tables, functions } = change {
        for (database, name, secrets) in tables {
            if state.table(database, name).is_some() {
                let options = serde_json::to_string(secrets)?;
                ops.push(Op::SetTableSecrets { database: database.clone(), name: name.clone(), options });
            }
        }
        for (name, secrets) in functions {
            if state.functions.contains_key(name) {
                let options = serde_json::to_string(secrets)?;
                ops.push(Op::SetFunctionSecrets { name: name.clone(), options });
            }
        }
        return Ok((ops, dropped));
    }
    match change {
        CatalogChange::CreateDatabase { def, if_not_exists } => {
            if state.databases.contains_key(&def.name) {
                if *if_not_exists {
                    return Ok((ops, dropped));
                }
                return Err(CatalogError::DatabaseExists(def.name.clone()));
            }
            ops.push(Op::InsertDatabase(def.clone()));
        }
        CatalogChange::DropDatabase { name, if_exists, cascade } => {
            let Some(entry) = state.databases.get(name) else {
                if *if_exists {
                    return Ok((ops, dropped));
                }
                return Err(CatalogError::DatabaseNotFound(name.clone()));
            };
            if name == DEFAULT_DATABASE {
                return Err(CatalogError::ProtectedDatabase(name.clone()));
            }
            if (!entry.tables.is_empty() || !entry.views.is_empty()) && !cascade {
                return Err(CatalogError::DatabaseNotEmpty(name.clone()));
            }
            for v in entry.views.values() {
                ops.push(Op::DeleteView { database: v.database.clone(), name: v.name.clone() });
            }
            for t in entry.tables.values() {
                ops.push(Op::DeleteTable { database: t.database.clone(), name: t.name.clone() });
                dropped.push(t.clone());
            }
            for g in &state.grants {
                let inside = match &g.object {
                    GrantObject::Table { database, .. } => database == name,
                    GrantObject::Database(d) => d == name,
                    GrantObject::Role(_) => false,
                };
                if inside {
                    ops.push(delete_grant(g));
                }
            }
            ops.push(Op::DeleteDatabase(name.clone()));
        }
        CatalogChange::CreateTable { def, if_not_exists } => {
            let Some(entry) = state.databases.get(&def.database) else {
                return Err(CatalogError::DatabaseNotFound(def.database.clone()));
            };
            if entry.tables.contains_key(&def.name) || entry.views.contains_key(&def.name) {
                if *if_not_exists {
                    return Ok((ops, dropped));
                }
                return Err(CatalogError::TableExists(def.database.clone(), def.name.clone()));
            }
            ops.push(Op::InsertTable(def.clone()));
            // CREATE TABLE AS: the write's directories are live with the table.
            ops.extend(crate::retention::commit_ids(def.live.iter().map(|d| d.dir.as_str())).into_iter().map(|commit| Op::DeleteWriteIntent { commit }));
        }
        CatalogChange::CreateView { def, or_replace, if_not_exists } => {
            let Some(entry) = state.databases.get(&def.database) else {
                return Err(CatalogError::DatabaseNotFound(def.database.clone()));
            };
            if entry.tables.contains_key(&def.name) {
                if *if_not_exists && !or_replace {
                    return Ok((ops, dropped));
                }
                if *or_replace {
                    return Err(CatalogError::NotAView(def.database.clone(), def.name.clone()));
                }
                return Err(CatalogError::TableExists(def.database.clone(), def.name.clone()));
            }
            if entry.views.contains_key(&def.name) {
                if *or_replace {
                    ops.push(Op::DeleteView { database: def.database.clone(), name: def.name.clone() });
                } else if *if_not_exists {
                    return Ok((ops, dropped));
                } else {
                    return Err(CatalogError::TableExists(def.database.clone(), def.name.clone()));
                }
            }
            ops.push(Op::InsertView(def.clone()));
        }
        CatalogChange::DropView { database, name, if_exists } => {
            let Some(entry) = state.databases.get(database) else {
                if *if_exists {
                    return Ok((ops, dropped));
                }
                return Err(CatalogError::DatabaseNotFound(database.clone()));
            };
            if entry.tables.contains_key(name) {
                return Err(CatalogError::NotAView(database.clone(), name.clone()));
            }
            if !entry.views.contains_key(name) {
                if *if_exists {
                    return Ok((ops, dropped));
                }
                return Err(CatalogError::TableNotFound(database.clone(), name.clone()));
            }
            ops.push(Op::DeleteView { database: database.clone(), name: name.clone() });
            ops.extend(grants_on(state, &GrantObject::Table { database: database.clone(), name: name.clone() }).map(delete_grant));
        }
        CatalogChange::ReplaceSecrets { .. } => unreachable!("handled above"),
        CatalogChange::CommitWrite { .. } | CatalogChange::ForgetRetired { .. } | CatalogChange::Transaction(_) => {
            return Err(CatalogError::Store("a data commit reached the DDL path; this is a bug in Bowman".into()));
        }
        CatalogChange::CreateUser { name, password_hash, if_not_exists } => {
            let role = RoleDef { name: name.clone(), login: true, ..Default::default() };
            return plan_change(state, &CatalogChange::CreateRole { role, password_hash: Some(password_hash.clone()), if_not_exists: *if_not_exists });
        }
        CatalogChange::CreateRole { role, password_hash, if_not_exists } => {
            if state.roles.contains_key(&role.name) || role.name.eq_ignore_ascii_case(PUBLIC_ROLE) {
                if *if_not_exists {
                    return Ok((ops, dropped));
                }
                return Err(CatalogError::UserExists(role.name.clone()));
            }
            ops.push(Op::InsertUser { role: role.clone(), password_hash: password_hash.clone().unwrap_or_default() });
        }
        CatalogChange::SetUserPassword { name, password_hash } => {
            let Some(role) = state.roles.get(name) else {
                return Err(CatalogError::UserNotFound(name.clone()));
            };
            return plan_change(state, &CatalogChange::AlterRole { role: role.clone(), password_hash: Some(password_hash.clone()) });
        }
        CatalogChange::AlterRole { role, password_hash } => {
            if !state.roles.contains_key(&role.name) {
                return Err(CatalogError::UserNotFound(role.name.clone()));
            }
            let hash = match password_hash {
                Some(h) => h.clone(),
                None => state.users.get(&role.name).cloned().unwrap_or_default(),
            };
            ops.push(Op::DeleteUser(role.name.clone()));
            ops.push(Op::InsertUser { role: role.clone(), password_hash: hash });
        }
        CatalogChange::DropUser { name, if_exists } => {
            if !state.roles.contains_key(name) {
                if *if_exists {
                    return Ok((ops, dropped));
                }
                return Err(CatalogError::UserNotFound(name.clone()));
            }
            if let Some(what) = state.owned_by(name) {
                return Err(CatalogError::RoleInUse(name.clone(), what));
            }
            for g in &state.grants {
                if &g.grantee == name || g.object == GrantObject::Role(name.clone()) {
                    ops.push(delete_grant(g));
                }
            }
            ops.push(Op::DeleteUser(name.clone()));
        }
        CatalogChange::Grant { grants } => {
            for g in grants {
                check_grant_target(state, &g.object)?;
                match state.grants.iter().find(|h| h.object == g.object && h.grantee == g.grantee && h.privilege == g.privilege) {
                    Some(held) if held.grant_option || !g.grant_option => {}
                    Some(held) => {
                        ops.push(delete_grant(held));
                        ops.push(Op::InsertGrant(g.clone()));
                    }
                    None => {
                        if !ops.iter().any(|o| matches!(o, Op::InsertGrant(h) if h.object == g.object && h.grantee == g.grantee && h.privilege == g.privilege)) {
                            ops.push(Op::InsertGrant(g.clone()));
                        }
                    }
                }
            }
        }
        CatalogChange::Revoke { grants, grant_option_only } => {
            for g in grants {
                check_grant_target(state, &g.object)?;
                for held in state.grants.iter().filter(|h| h.object == g.object && h.grantee == g.grantee && h.privilege == g.privilege) {
                    if *grant_option_only {
                        if held.grant_option {
                            ops.push(delete_grant(held));
                            ops.push(Op::InsertGrant(Grant { grant_option: false, ..held.clone() }));
                        }
                    } else {
                        ops.push(delete_grant(held));
                    }
                }
            }
        }
        CatalogChange::CreateFunction { def, or_replace, if_not_exists } => {
            if state.functions.contains_key(&def.name) {
                if *if_not_exists {
                    return Ok((ops, dropped));
                }
                if !or_replace {
                    return Err(CatalogError::FunctionExists(def.name.clone()));
                }
                ops.push(Op::DeleteFunction(def.name.clone()));
            }
            ops.push(Op::InsertFunction(def.clone()));
        }
        CatalogChange::DropFunction { name, if_exists } => {
            if !state.functions.contains_key(name) {
                if *if_exists {
                    return Ok((ops, dropped));
                }
                return Err(CatalogError::FunctionNotFound(name.clone()));
            }
            ops.push(Op::DeleteFunction(name.clone()));
        }
        CatalogChange::RenameTable { database, name, new_database, new_name } => {
            let Some(target) = state.databases.get(new_database) else {
                return Err(CatalogError::DatabaseNotFound(new_database.clone()));
            };
            if target.tables.contains_key(new_name) || target.views.contains_key(new_name) {
                return Err(CatalogError::TableExists(new_database.clone(), new_name.clone()));
            }
            if let Some(v) = state.databases.get(database).and_then(|d| d.views.get(name)) {
                let mut renamed = v.clone();
                renamed.database = new_database.clone();
                renamed.name = new_name.clone();
                ops.push(Op::DeleteView { database: database.clone(), name: name.clone() });
                ops.push(Op::InsertView(renamed));
                move_grants(state, database, name, new_database, new_name, &mut ops);
                return Ok((ops, dropped));
            }
            let t = state
                .databases
                .get(database)
                .and_then(|d| d.tables.get(name))
                .ok_or_else(|| CatalogError::TableNotFound(database.clone(), name.clone()))?;
            let mut renamed = t.clone();
            renamed.database = new_database.clone();
            renamed.name = new_name.clone();
            ops.push(Op::DeleteTable { database: database.clone(), name: name.clone() });
            ops.push(Op::InsertTable(renamed));
            move_grants(state, database, name, new_database, new_name, &mut ops);
        }
        CatalogChange::DropTable { database, name, if_exists } => {
            let Some(entry) = state.databases.get(database) else {
                if *if_exists {
                    return Ok((ops, dropped));
                }
                return Err(CatalogError::DatabaseNotFound(database.clone()));
            };
            if entry.views.contains_key(name) {
                return Err(CatalogError::NotATable(database.clone(), name.clone()));
            }
            let Some(t) = entry.tables.get(name) else {
                if *if_exists {
                    return Ok((ops, dropped));
                }
                return Err(CatalogError::TableNotFound(database.clone(), name.clone()));
            };
            dropped.push(t.clone());
            ops.push(Op::DeleteTable { database: database.clone(), name: name.clone() });
            ops.extend(grants_on(state, &GrantObject::Table { database: database.clone(), name: name.clone() }).map(delete_grant));
        }
    }
    Ok((ops, dropped))
}

/// The row that hands a retired commit directory to the sweeper.
fn retire_dir(table: &TableDef, live: &LiveDir, now: i64) -> Option<Op> {
    Some(Op::InsertRetiredDir(crate::retention::RetiredDir {
        location: table.location.clone()?,
        partition: live.partition.clone(),
        dir: live.dir.clone(),
        database: table.database.clone(),
        table: table.name.clone(),
        retired_at: now,
    }))
}

/// What a data transaction writes, planned over the rows of the tables it locked.
#[derive(Debug, Default)]
pub(crate) struct DataPlan {
    pub ops: Vec<Op>,
    /// Tables whose live data changed: their data version moves.
    pub bumped: BTreeSet<TableKey>,
    /// Tables other nodes must reload (the bumped ones, and those whose retired files changed).
    pub touched: BTreeSet<TableKey>,
    pub committed: Vec<Committed>,
}

impl DataPlan {
    pub(crate) fn outcome(self, version: i64, applied: bool) -> ChangeOutcome {
        let retired = self.committed.iter().flat_map(|c| c.retired.clone()).collect();
        let retired_files = self.committed.iter().flat_map(|c| c.retired_files.clone()).collect();
        ChangeOutcome { version, applied, dropped_tables: Vec::new(), retired, retired_files, committed: self.committed }
    }
}

/// Check a data transaction against the tables it locked (`tables`: those of
/// [`Transaction::tables`] that exist) and turn it into primitive writes. Shared by every store.
pub(crate) fn plan_transaction(mut tables: BTreeMap<TableKey, TableDef>, t: &Transaction) -> Result<DataPlan> {
    for e in &t.expect {
        let table = tables
            .get(&(e.database.clone(), e.name.clone()))
            .ok_or_else(|| CatalogError::TableNotFound(e.database.clone(), e.name.clone()))?;
        if table.data_version != e.data_version {
            return Err(CatalogError::Conflict(table.qualified_name()));
        }
    }
    let mut plan = DataPlan::default();
    let mut committed: BTreeMap<TableKey, Committed> = BTreeMap::new();
    for m in &t.mutations {
        match m {
            Mutation::CommitWrite { database, name, replace, add, expect, retire_files } => {
                let key = (database.clone(), name.clone());
                let table = tables.get_mut(&key).ok_or_else(|| CatalogError::TableNotFound(database.clone(), name.clone()))?;
                let ops = plan_commit_write(table, replace, add, expect.as_ref(), retire_files)?;
                if ops.is_empty() {
                    continue;
                }
                let entry = committed.entry(key.clone()).or_insert_with(|| Committed {
                    database: database.clone(),
                    name: name.clone(),
                    data_version: table.data_version + 1,
                    retired: Vec::new(),
                    retired_files: Vec::new(),
                });
                entry.retired.extend(retired_in(table, &ops));
                entry.retired_files.extend(retired_files(&ops));
                apply_to(table, &ops);
                plan.ops.extend(ops);
                plan.bumped.insert(key.clone());
                plan.touched.insert(key);
            }
            Mutation::ForgetRetired { database, name, paths } => {
                // The table may be gone (dropped meanwhile): then its rows went with it.
                let key = (database.clone(), name.clone());
                let Some(table) = tables.get_mut(&key) else { continue };
                let ops: Vec<Op> = paths
                    .iter()
                    .filter(|p| table.retired.iter().any(|r| &r.path == *p))
                    .map(|p| Op::DeleteRetiredFile { database: database.clone(), name: name.clone(), path: p.clone() })
                    .collect();
                if ops.is_empty() {
                    continue;
                }
                apply_to(table, &ops);
                plan.ops.extend(ops);
                plan.touched.insert(key);
            }
            Mutation::Checkpoint(c) => plan.ops.push(Op::PutCheckpoint(c.clone())),
        }
    }
    plan.committed = committed.into_values().collect();
    Ok(plan)
}

/// One write made visible in `table`: see [`CatalogChange::CommitWrite`].
fn plan_commit_write(table: &TableDef, replace: &Replace, add: &[LiveDir], expect: Option<&Vec<LiveDir>>, retire_files: &[String]) -> Result<Vec<Op>> {
    let (database, name) = (&table.database, &table.name);
    let mut ops = Vec::new();
    let external = table.kind == TableKind::External;
    if !table.tracked && !external {
        return Err(CatalogError::Corrupt(format!("{} is not a tracked table", table.qualified_name())));
    }
    let now = now_millis();
    let retire = |path: &str, ops: &mut Vec<Op>| {
        if !table.retired.iter().any(|r| r.path == path)
            && !ops.iter().any(|o| matches!(o, Op::InsertRetiredFile { file, .. } if file.path == path))
        {
            let file = RetiredFile { path: path.to_string(), retired_at: now };
            ops.push(Op::InsertRetiredFile { database: database.clone(), name: name.clone(), file });
        }
    };
    let replaced = |live: &LiveDir| match replace {
        Replace::Nothing => false,
        Replace::All => true,
        Replace::Partitions(parts) => parts.contains(&live.partition),
    };
    if let Some(expected) = expect {
        let now: Vec<&LiveDir> = table.live.iter().filter(|l| replaced(l)).collect();
        let then: Vec<&LiveDir> = expected.iter().filter(|l| replaced(l)).collect();
        if now != then {
            return Err(CatalogError::Conflict(table.qualified_name()));
        }
    }
    for live in &table.live {
        if replaced(live) {
            ops.push(Op::DeleteLiveDir { database: database.clone(), name: name.clone(), dir: live.dir.clone() });
            if external {
                retire(&live.dir, &mut ops);
            } else {
                ops.extend(retire_dir(table, live, now));
            }
        }
    }
    ops.extend(crate::retention::commit_ids(add.iter().map(|d| d.dir.as_str())).into_iter().map(|commit| Op::DeleteWriteIntent { commit }));
    if external {
        for path in retire_files {
            retire(path, &mut ops);
        }
    }
    for dir in add {
        ops.push(Op::InsertLiveDir { database: database.clone(), name: name.clone(), dir: dir.clone() });
    }
    Ok(ops)
}

/// `table` as it is once `ops` ran, so the next mutation of the same transaction sees them.
fn apply_to(table: &mut TableDef, ops: &[Op]) {
    for op in ops {
        match op {
            Op::DeleteLiveDir { dir, .. } => table.live.retain(|l| &l.dir != dir),
            Op::InsertLiveDir { dir, .. } => table.live.push(dir.clone()),
            Op::InsertRetiredFile { file, .. } => table.retired.push(file.clone()),
            Op::DeleteRetiredFile { path, .. } => table.retired.retain(|r| &r.path != path),
            _ => {}
        }
    }
}

/// The live entries of `table` that `ops` remove.
fn retired_in(table: &TableDef, ops: &[Op]) -> Vec<LiveDir> {
    ops.iter()
        .filter_map(|op| match op {
            Op::DeleteLiveDir { dir, .. } => table.live.iter().find(|l| &l.dir == dir).cloned(),
            _ => None,
        })
        .collect()
}

/// The tables DDL `ops` delete (DROP, RENAME, DROP DATABASE): the store locks their rows, so
/// no data commit to them is lost in between.
pub(crate) fn deleted_tables(ops: &[Op]) -> BTreeSet<TableKey> {
    ops.iter()
        .filter_map(|op| match op {
            Op::DeleteTable { database, name } => Some((database.clone(), name.clone())),
            _ => None,
        })
        .collect()
}

fn delete_grant(g: &Grant) -> Op {
    Op::DeleteGrant { object: g.object.clone(), grantee: g.grantee.clone(), privilege: g.privilege.clone() }
}

fn grants_on<'a>(state: &'a CatalogState, object: &'a GrantObject) -> impl Iterator<Item = &'a Grant> + 'a {
    state.grants.iter().filter(move |g| &g.object == object)
}

/// A renamed table keeps its grants.
fn move_grants(state: &CatalogState, database: &str, name: &str, new_database: &str, new_name: &str, ops: &mut Vec<Op>) {
    let old = GrantObject::Table { database: database.to_string(), name: name.to_string() };
    for g in grants_on(state, &old) {
        ops.push(delete_grant(g));
        let object = GrantObject::Table { database: new_database.to_string(), name: new_name.to_string() };
        ops.push(Op::InsertGrant(Grant { object, ..g.clone() }));
    }
}

fn check_grant_target(state: &CatalogState, object: &GrantObject) -> Result<()> {
    match object {
        GrantObject::Table { database, name } => {
            if state.table(database, name).is_none() && state.view(database, name).is_none() {
                return Err(CatalogError::TableNotFound(database.clone(), name.clone()));
            }
        }
        GrantObject::Database(d) => {
            if state.database(d).is_none() {
                return Err(CatalogError::DatabaseNotFound(d.clone()));
            }
        }
        GrantObject::Role(_) => {}
    }
    Ok(())
}

/// Files a change retires (the caller deletes them later).
pub(crate) fn retired_files(ops: &[Op]) -> Vec<String> {
    ops.iter()
        .filter_map(|op| match op {
            Op::InsertRetiredFile { file, .. } => Some(file.path.clone()),
            _ => None,
        })
        .collect()
}

/// A table row as both stores keep it: JSON text for the structured parts.
pub(crate) struct TableRow {
    pub database: String,
    pub name: String,
    pub kind: String,
    pub format: String,
    pub location: Option<String>,
    pub columns: String,
    pub partition_columns: String,
    pub options: String,
    pub secret_options: Option<String>,
    pub comment: Option<String>,
    pub created_at: i64,
    pub tracked: bool,
    pub owner: Option<String>,
    pub data_version: i64,
}

impl TableRow {
    pub(crate) fn encode(def: &TableDef) -> Result<Self> {
        Ok(TableRow {
            database: def.database.clone(),
            name: def.name.clone(),
            kind: def.kind.as_str().to_string(),
            format: def.format.clone(),
            location: def.location.clone(),
            columns: serde_json::to_string(&def.columns)?,
            partition_columns: serde_json::to_string(&def.partition_columns)?,
            options: serde_json::to_string(&def.options)?,
            secret_options: Some(serde_json::to_string(&def.secret_options)?),
            comment: def.comment.clone(),
            created_at: def.created_at,
            tracked: def.tracked,
            owner: def.owner.clone(),
            data_version: def.data_version,
        })
    }

    pub(crate) fn decode(self) -> Result<TableDef> {
        let kind = TableKind::parse(&self.kind)
            .ok_or_else(|| CatalogError::Corrupt(format!("table {}.{} has kind {:?}", self.database, self.name, self.kind)))?;
        let columns: Vec<ColumnDef> = serde_json::from_str(&self.columns)?;
        let partition_columns: Vec<String> = serde_json::from_str(&self.partition_columns)?;
        let options: BTreeMap<String, String> = serde_json::from_str(&self.options)?;
        let secret_options: BTreeMap<String, String> = match &self.secret_options {
            Some(s) => serde_json::from_str(s)?,
            None => BTreeMap::new(),
        };
        Ok(TableDef {
            database: self.database,
            name: self.name,
            kind,
            format: self.format,
            location: self.location,
            columns,
            partition_columns,
            options,
            secret_options,
            comment: self.comment,
            created_at: self.created_at,
            tracked: self.tracked,
            live: Vec::new(),
            retired: Vec::new(),
            owner: self.owner,
            data_version: self.data_version,
        })
    }
}

/// Assemble a state from the rows a store read in one transaction.
pub(crate) fn assemble(
    (version, schema_version): (i64, i64),
    databases: Vec<DatabaseDef>,
    tables: Vec<TableRow>,
    live: Vec<(String, String, LiveDir)>,
    retired: Vec<(String, String, RetiredFile)>,
    users: Vec<(RoleDef, String)>,
    functions: Vec<FunctionRow>,
    views: Vec<ViewRow>,
    grants: Vec<Grant>,
) -> Result<CatalogState> {
    let mut state = CatalogState {
        version,
        schema_version,
        databases: BTreeMap::new(),
        // Roles without a password (CREATE ROLE r) have none; NOLOGIN ones keep theirs, and
        // logins check `roles` for LOGIN.
        users: users.iter().filter(|(_, h)| !h.is_empty()).map(|(r, h)| (r.name.clone(), h.clone())).collect(),
        functions: BTreeMap::new(),
        roles: BTreeMap::new(),
        grants,
    };
    state.grants.sort();
    for (role, _) in users {
        state.roles.insert(role.name.clone(), role);
    }
    for f in functions {
        let def = f.decode()?;
        state.functions.insert(def.name.clone(), def);
    }
    for def in databases {
        state.databases.insert(def.name.clone(), DatabaseEntry { def, tables: BTreeMap::new(), views: BTreeMap::new() });
    }
    for row in tables {
        let def = row.decode()?;
        let entry = state
            .databases
            .get_mut(&def.database)
            .ok_or_else(|| CatalogError::Corrupt(format!("table {} has no database", def.qualified_name())))?;
        entry.tables.insert(def.name.clone(), def);
    }
    for row in views {
        let def = row.decode()?;
        let entry = state
            .databases
            .get_mut(&def.database)
            .ok_or_else(|| CatalogError::Corrupt(format!("view {} has no database", def.qualified_name())))?;
        entry.views.insert(def.name.clone(), def);
    }
    for (database, table, dir) in live {
        if let Some(t) = state.databases.get_mut(&database).and_then(|d| d.tables.get_mut(&table)) {
            t.live.push(dir);
        }
    }
    for (database, table, file) in retired {
        if let Some(t) = state.databases.get_mut(&database).and_then(|d| d.tables.get_mut(&table)) {
            t.retired.push(file);
        }
    }
    for t in state.databases.values_mut().flat_map(|d| d.tables.values_mut()) {
        t.live.sort();
        t.retired.sort();
    }
    Ok(state)
}

pub(crate) fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Open the store a catalog URL names: `postgres://...` / `postgresql://...` for PostgreSQL,
/// `sqlite:///path/catalog.db` or a plain path for SQLite.
pub async fn open_store(url: &str) -> Result<Arc<dyn CatalogStore>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(crate::PostgresStore::connect(url).await?))
    } else {
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        let store = crate::SqliteStore::open(std::path::Path::new(path))?;
        Ok(Arc::new(store))
    }
}

/// Tables this process reloaded from a catalog store (whole-catalog loads count every table):
/// `bowman_catalog_table_reloads_total`.
static TABLE_RELOADS: AtomicU64 = AtomicU64::new(0);

/// How many tables every [`Catalog`] of this process reloaded from its store, for `/metrics`
/// (`bowman_catalog_table_reloads_total`, a counter).
pub fn table_reloads_total() -> u64 {
    TABLE_RELOADS.load(Ordering::Relaxed)
}

/// The catalog as the rest of Bowman uses it: a store plus an in-memory snapshot.
///
/// With [`SecretKeys`](crate::SecretKeys), secret options are encrypted before they reach the
/// store and decrypted when it is read: the store (and its files or dumps) never holds them as
/// text, while the snapshot has them as given, for the connectors.
///
/// The snapshot follows the store's log: DDL (another node's included) reloads it whole; a
/// data commit only marks its tables stale ([`Catalog::sync`]), and a stale table is reloaded
/// alone when a statement opens it ([`Catalog::table`]). So an INSERT into one table costs
/// every other node one small log read, not a catalog load.
#[derive(Debug)]
pub struct Catalog {
    store: Arc<dyn CatalogStore>,
    snapshot: RwLock<Arc<CatalogState>>,
    keys: Option<Arc<crate::SecretKeys>>,
    log: Mutex<LogPosition>,
    /// Held while reloading, so a whole-catalog load never puts back older contents of a table
    /// reloaded alone meanwhile, and two statements needing the same reload do it once.
    reloading: tokio::sync::Mutex<()>,
    reloads: AtomicU64,
}

/// Where this catalog is in the store's log. Invariant: the snapshot holds every change up to
/// `snapshot.version`, and every table changed after it (up to `version`) is in `stale`.
#[derive(Debug, Default)]
struct LogPosition {
    version: i64,
    /// Stale tables, with the last log version that touched each.
    stale: BTreeMap<TableKey, i64>,
}

impl Catalog {
    /// Load the catalog from `store`, creating the `default` database on first use. Secret
    /// options are stored as given (see [`Catalog::open_with_keys`]).
    pub async fn open(store: Arc<dyn CatalogStore>) -> Result<Self> {
        Self::open_with_keys(store, None).await
    }

    /// Like [`Catalog::open`], keeping secret options encrypted with `keys`. Secrets stored as
    /// text (by earlier releases) or with an older key are encrypted with the current key now;
    /// secrets no configured key decrypts fail the open.
    pub async fn open_with_keys(store: Arc<dyn CatalogStore>, keys: Option<Arc<crate::SecretKeys>>) -> Result<Self> {
        let catalog = Catalog {
            store,
            snapshot: RwLock::new(Arc::new(CatalogState::default())),
            keys,
            log: Mutex::new(LogPosition::default()),
            reloading: tokio::sync::Mutex::new(()),
            reloads: AtomicU64::new(0),
        };
        catalog
            .apply(CatalogChange::CreateDatabase {
                def: DatabaseDef {
                    name: DEFAULT_DATABASE.to_string(),
                    comment: Some("default database".to_string()),
                    location: None,
                    created_at: now_millis(),
                    owner: None,
                },
                if_not_exists: true,
            })
            .await?;
        if let Some(keys) = &catalog.keys {
            catalog.seal_stale(keys).await?;
        }
        catalog.refresh().await?;
        Ok(catalog)
    }

    /// Encrypt (again) every secret stored as text or with an older key.
    async fn seal_stale(&self, keys: &crate::SecretKeys) -> Result<()> {
        use crate::secrets::Sealed;
        let raw = self.store.load().await?;
        let mut tables = Vec::new();
        for t in raw.databases.values().flat_map(|d| d.tables.values()) {
            let (plain, how) = keys.open(&t.secret_options).map_err(|e| CatalogError::SecretKey(format!("table {}: {e}", t.qualified_name())))?;
            if how == Sealed::Stale {
                tables.push((t.database.clone(), t.name.clone(), keys.seal(&plain)));
            }
        }
        let mut functions = Vec::new();
        for f in raw.functions.values() {
            let (plain, how) = keys.open(&f.secret_options).map_err(|e| CatalogError::SecretKey(format!("function {}: {e}", f.name)))?;
            if how == Sealed::Stale {
                functions.push((f.name.clone(), keys.seal(&plain)));
            }
        }
        if !tables.is_empty() || !functions.is_empty() {
            tracing::info!(tables = tables.len(), functions = functions.len(), key = keys.current_id(), "encrypting secret options with the current key");
            self.store.apply(CatalogChange::ReplaceSecrets { tables, functions }).await?;
        }
        Ok(())
    }

    /// `change` as the store keeps it: secret options encrypted.
    fn seal_change(&self, change: CatalogChange) -> CatalogChange {
        let Some(keys) = &self.keys else { return change };
        match change {
            CatalogChange::CreateTable { mut def, if_not_exists } => {
                def.secret_options = keys.seal(&def.secret_options);
                CatalogChange::CreateTable { def, if_not_exists }
            }
            CatalogChange::CreateFunction { mut def, or_replace, if_not_exists } => {
                def.secret_options = keys.seal(&def.secret_options);
                CatalogChange::CreateFunction { def, or_replace, if_not_exists }
            }
            other => other,
        }
    }

    /// A table as the store gave it, with its secret options decrypted. A secret no key opens
    /// is left out (the table's connector then fails to authenticate) and logged.
    fn open_table(&self, def: &mut TableDef) {
        if let Some(keys) = &self.keys {
            match keys.open(&def.secret_options) {
                Ok((plain, _)) => def.secret_options = plain,
                Err(e) => {
                    tracing::error!(table = %def.qualified_name(), error = %e, "cannot decrypt secret options");
                    def.secret_options.clear();
                }
            }
        } else if crate::secrets::sealed_value(&def.secret_options).is_some() {
            tracing::error!(table = %def.qualified_name(), "secret options are encrypted but no secret key is configured");
            def.secret_options.clear();
        }
    }

    fn open_state(&self, mut state: CatalogState) -> CatalogState {
        for t in state.databases.values_mut().flat_map(|d| d.tables.values_mut()) {
            self.open_table(t);
        }
        for f in state.functions.values_mut() {
            let result = match &self.keys {
                Some(keys) => keys.open(&f.secret_options).map(|(plain, _)| plain),
                None if crate::secrets::sealed_value(&f.secret_options).is_some() => Err("no secret key is configured".into()),
                None => Ok(f.secret_options.clone()),
            };
            match result {
                Ok(plain) => f.secret_options = plain,
                Err(e) => {
                    tracing::error!(function = %f.name, error = %e, "cannot decrypt secret options");
                    f.secret_options.clear();
                }
            }
        }
        state
    }

    /// The current snapshot (no I/O).
    pub fn snapshot(&self) -> Arc<CatalogState> {
        self.snapshot.read().expect("catalog snapshot lock").clone()
    }

    /// Bring the snapshot fully up to date: whatever another node changed is in it afterwards.
    pub async fn refresh(&self) -> Result<Arc<CatalogState>> {
        self.sync().await?;
        let stale: Vec<TableKey> = self.log().stale.keys().cloned().collect();
        self.reload_tables(stale).await?;
        Ok(self.snapshot())
    }

    /// Follow the store's log since the version this catalog holds: DDL reloads the whole
    /// snapshot; tables that only had data commits are marked stale and reloaded when opened
    /// ([`Catalog::table`]). One cheap query when nothing changed. Statements start with this.
    pub async fn sync(&self) -> Result<Arc<CatalogState>> {
        let since = self.log().version;
        if since == 0 {
            return self.reload_all(None).await;
        }
        let changes = self.store.changes_since(since).await?;
        if changes.schema {
            // (A store behind this catalog, restored from a backup, is loaded whatever it holds.)
            return self.reload_all((changes.version > since).then_some(changes.version)).await;
        }
        let mut log = self.log();
        if changes.version > log.version {
            log.version = changes.version;
            for (key, version) in changes.tables {
                let v = log.stale.entry(key).or_insert(version);
                *v = (*v).max(version);
            }
        }
        drop(log);
        Ok(self.snapshot())
    }

    /// A table as of the last [`Catalog::sync`]: reloaded first when a data commit the sync
    /// saw made it stale (with the stale tables over the same location, whose files it shows).
    /// `None` when there is none.
    pub async fn table(&self, database: &str, name: &str) -> Result<Option<TableDef>> {
        let key: TableKey = (canonical_database(database).to_string(), name.to_string());
        let snapshot = self.snapshot();
        let location = snapshot.table(&key.0, &key.1).and_then(|t| t.location.clone());
        let reload: Vec<TableKey> = self
            .log()
            .stale
            .keys()
            .filter(|k| {
                **k == key
                    || location.is_some() && snapshot.table(&k.0, &k.1).is_some_and(|t| t.location == location)
            })
            .cloned()
            .collect();
        self.reload_tables(reload).await?;
        Ok(self.snapshot().table(&key.0, &key.1).cloned())
    }

    /// How many tables this catalog reloaded from its store (a whole-catalog load counts each
    /// of its tables).
    pub fn tables_reloaded(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    fn count_reloads(&self, tables: usize) {
        self.reloads.fetch_add(tables as u64, Ordering::Relaxed);
        TABLE_RELOADS.fetch_add(tables as u64, Ordering::Relaxed);
    }

    fn log(&self) -> std::sync::MutexGuard<'_, LogPosition> {
        self.log.lock().expect("catalog log position")
    }

    /// Load the whole catalog, unless a load that holds `version` happened meanwhile.
    async fn reload_all(&self, version: Option<i64>) -> Result<Arc<CatalogState>> {
        let _reloading = self.reloading.lock().await;
        let current = self.snapshot();
        if version.is_some_and(|v| current.version >= v) {
            return Ok(current);
        }
        let state = Arc::new(self.open_state(self.store.load().await?));
        self.count_reloads(state.databases.values().map(|d| d.tables.len()).sum());
        let mut guard = self.snapshot.write().expect("catalog snapshot lock");
        *guard = state.clone();
        let mut log = self.log();
        log.version = if version.is_some() { log.version.max(state.version) } else { state.version };
        log.stale.retain(|_, v| *v > state.version);
        Ok(guard.clone())
    }

    /// Reload these tables alone and put them in the snapshot.
    async fn reload_tables(&self, keys: Vec<TableKey>) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let _reloading = self.reloading.lock().await;
        let keys: Vec<TableKey> = {
            let log = self.log();
            keys.into_iter().filter(|k| log.stale.contains_key(k)).collect()
        };
        if keys.is_empty() {
            return Ok(());
        }
        let (version, mut tables) = self.store.load_tables(&keys).await?;
        self.count_reloads(tables.len());
        for t in &mut tables {
            self.open_table(t);
        }
        let mut guard = self.snapshot.write().expect("catalog snapshot lock");
        let mut state = (**guard).clone();
        for t in tables {
            // A table whose database is gone went with DDL: the next sync reloads everything.
            if let Some(entry) = state.databases.get_mut(&t.database) {
                entry.tables.insert(t.name.clone(), t);
            }
        }
        *guard = Arc::new(state);
        self.log().stale.retain(|k, v| !(keys.contains(k) && *v <= version));
        Ok(())
    }

    /// Apply one change atomically and bring the snapshot up to date with it (a data commit
    /// reloads only its own tables).
    pub async fn apply(&self, change: CatalogChange) -> Result<ChangeOutcome> {
        let change = self.seal_change(change.canonical());
        let written: Vec<TableKey> = match &change {
            CatalogChange::CommitWrite { database, name, .. } | CatalogChange::ForgetRetired { database, name, .. } => {
                vec![(database.clone(), name.clone())]
            }
            CatalogChange::Transaction(t) => t.tables().into_iter().collect(),
            _ => Vec::new(),
        };
        let mut outcome = self.store.apply(change).await?;
        // Dropped tables go back to the caller, which may need their credentials to delete data.
        for t in &mut outcome.dropped_tables {
            self.open_table(t);
        }
        self.sync().await?;
        let stale: Vec<TableKey> = {
            let log = self.log();
            written.into_iter().filter(|k| log.stale.contains_key(k)).collect()
        };
        self.reload_tables(stale).await?;
        Ok(outcome)
    }

    /// Commit several mutations in one catalog transaction: all of them or (on an error, a
    /// [`CatalogError::Conflict`] included) none.
    pub async fn commit(&self, transaction: Transaction) -> Result<ChangeOutcome> {
        self.apply(CatalogChange::Transaction(transaction)).await
    }

    /// The checkpoints committed for `source`, by partition.
    pub async fn checkpoints(&self, source: &str) -> Result<Vec<Checkpoint>> {
        self.store.checkpoints(source).await
    }

    /// Whether other Bowman servers may share this catalog.
    pub fn is_shared(&self) -> bool {
        self.store.is_shared()
    }

    pub fn store(&self) -> &Arc<dyn CatalogStore> {
        &self.store
    }
}


/// A function row as both stores keep it: options as JSON text.
pub(crate) struct FunctionRow {
    pub name: String,
    pub kind: String,
    pub options: String,
    pub secret_options: String,
    pub created_at: i64,
    pub owner: Option<String>,
}

impl FunctionRow {
    pub(crate) fn encode(def: &FunctionDef) -> Result<Self> {
        Ok(FunctionRow {
            name: def.name.clone(),
            kind: def.kind.clone(),
            options: serde_json::to_string(&def.options).map_err(|e| CatalogError::Corrupt(e.to_string()))?,
            secret_options: serde_json::to_string(&def.secret_options).map_err(|e| CatalogError::Corrupt(e.to_string()))?,
            created_at: def.created_at,
            owner: def.owner.clone(),
        })
    }

    fn decode(self) -> Result<FunctionDef> {
        let parse = |t: &str| serde_json::from_str(t).map_err(|e| CatalogError::Corrupt(format!("function {}: {e}", self.name)));
        Ok(FunctionDef {
            options: parse(&self.options)?,
            secret_options: parse(&self.secret_options)?,
            name: self.name.clone(),
            kind: self.kind.clone(),
            created_at: self.created_at,
            owner: self.owner.clone(),
        })
    }
}


/// A view row as both stores keep it: its columns as JSON text.
pub(crate) struct ViewRow {
    pub database: String,
    pub name: String,
    pub query: String,
    pub query_database: String,
    pub columns: String,
    pub comment: Option<String>,
    pub created_at: i64,
    pub owner: Option<String>,
}

impl ViewRow {
    pub(crate) fn encode(def: &ViewDef) -> Result<Self> {
        Ok(ViewRow {
            database: def.database.clone(),
            name: def.name.clone(),
            query: def.query.clone(),
            query_database: def.query_database.clone(),
            columns: serde_json::to_string(&def.columns)?,
            comment: def.comment.clone(),
            created_at: def.created_at,
            owner: def.owner.clone(),
        })
    }

    fn decode(self) -> Result<ViewDef> {
        let columns: Vec<ColumnDef> = serde_json::from_str(&self.columns)
            .map_err(|e| CatalogError::Corrupt(format!("view {}.{}: {e}", self.database, self.name)))?;
        Ok(ViewDef {
            database: self.database,
            name: self.name,
            query: self.query,
            query_database: self.query_database,
            columns,
            comment: self.comment,
            created_at: self.created_at,
            owner: self.owner,
        })
    }
}
