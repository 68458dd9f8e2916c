//! Privileges: PostgreSQL's model in the small (see docs/privileges.md).
//!
//! * A session runs as the role it authenticated as ([`crate::Session::set_user`]). A session
//!   without a user (embedded use, tests) may do anything, and so may a session the front end
//!   trusts ([`crate::Session::set_trusted_user`]: a server without users, like PostgreSQL's
//!   bootstrap user on a trust line).
//! * Superusers (bowman.toml's first user or those flagged `superuser = true`, and catalog roles
//!   with `SUPERUSER`) pass every check.
//! * Objects (databases, tables, views, functions) have an owner, the role that created them;
//!   objects without one belong to the superuser. The owner holds every privilege on them and
//!   alone (with superusers) may drop, rename or grant on them.
//! * `GRANT SELECT, INSERT, ... ON [TABLE] t | ALL TABLES IN SCHEMA d | DATABASE d TO role` give
//!   table privileges (on a database: on every table in it, now and later); `GRANT CREATE ON
//!   DATABASE d` lets a role create tables there; `GRANT role TO member` makes a member inherit a
//!   role's privileges. `pg_read_server_files` / `pg_write_server_files` are needed for a local
//!   LOCATION (a server path or `file://` URL).
//!
//! Reads and writes are checked at one point: [`CheckPrivileges`], an analyzer rule of every
//! session, walks each plan before it runs (subqueries, CTEs, joins and DML targets included) and
//! looks each scanned table up by its provider, which the resolver records ([`Opened`]) for every
//! table it opens, whatever path asked. A view's own query is checked against the view's owner,
//! as PostgreSQL does.

use std::any::Any;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock, Weak};

use bowman_catalog::{CatalogChange, CatalogState, Grant, GrantObject, PUBLIC_ROLE, RoleDef};
use datafusion::catalog::TableProvider;
use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::config::ConfigOptions;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{LogicalPlan, WriteOp};
use datafusion::optimizer::AnalyzerRule;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::error::{BowmanError, Result};
use crate::output::Output;
use crate::parser::{TableName, ident_value, table_name_from};
use crate::session::Session;

/// Members may use a local LOCATION to read server files.
pub const READ_SERVER_FILES: &str = "pg_read_server_files";
/// Members may write server files through a local LOCATION.
pub const WRITE_SERVER_FILES: &str = "pg_write_server_files";
const PREDEFINED_ROLES: &[&str] = &[READ_SERVER_FILES, WRITE_SERVER_FILES];
/// How the superuser shows as the owner of what has no owner (aclitem text, grantors).
const SUPERUSER_NAME: &str = "bowman";

/// Table privileges and their `aclitem` letters, in PostgreSQL's order (`arwdD`).
const TABLE_PRIVILEGES: &[(&str, char)] = &[("INSERT", 'a'), ("SELECT", 'r'), ("UPDATE", 'w'), ("DELETE", 'd'), ("TRUNCATE", 'D')];
/// Database (schema) privileges.
const DATABASE_PRIVILEGES: &[(&str, char)] = &[("CREATE", 'C'), ("USAGE", 'U')];

/// The users bowman.toml defines (they are not in the catalog) and which are superusers.
#[derive(Debug, Default, Clone)]
pub struct ConfigRoles {
    pub users: BTreeSet<String>,
    pub superusers: BTreeSet<String>,
}

/// The role a plan is checked for: the session's user, or a view's owner inside the view.
/// A DataFusion config extension so that it travels with the session state into views and
/// subplans; it cannot be SET.
#[derive(Debug, Clone)]
pub(crate) struct AccessScope {
    /// `None`: the superuser (a view without an owner).
    pub role: Option<String>,
}

impl ConfigExtension for AccessScope {
    const PREFIX: &'static str = "bowman_access";
}

impl ExtensionOptions for AccessScope {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, _value: &str) -> datafusion::error::Result<()> {
        Err(DataFusionError::Configuration(format!("bowman_access.{key} cannot be set")))
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        Vec::new()
    }
}

/// Catalog tables the resolver opened, by provider, so that a scan in any plan names its table.
#[derive(Debug, Default)]
pub(crate) struct Opened {
    by_address: Mutex<(HashMap<usize, (Weak<dyn TableProvider>, String, String)>, usize)>,
}

fn address(p: &Arc<dyn TableProvider>) -> usize {
    Arc::as_ptr(p) as *const () as usize
}

impl Opened {
    pub(crate) fn record(&self, provider: &Arc<dyn TableProvider>, database: &str, name: &str) {
        let mut guard = self.by_address.lock().expect("opened tables");
        let (map, pruned_at) = &mut *guard;
        if map.len() > 256 && map.len() > 2 * *pruned_at {
            map.retain(|_, (weak, _, _)| weak.strong_count() > 0);
            *pruned_at = map.len();
        }
        map.insert(address(provider), (Arc::downgrade(provider), database.to_string(), name.to_string()));
    }

    /// The (database, name) of the catalog table `provider` opens, if it is one.
    pub(crate) fn lookup(&self, provider: &Arc<dyn TableProvider>) -> Option<(String, String)> {
        let guard = self.by_address.lock().expect("opened tables");
        let (weak, db, name) = guard.0.get(&address(provider))?;
        let alive = weak.upgrade()?;
        Arc::ptr_eq(&alive, provider).then(|| (db.clone(), name.clone()))
    }
}

/// What one role may do, over one catalog snapshot.
pub(crate) struct Access<'a> {
    state: &'a CatalogState,
    config: &'a ConfigRoles,
    /// `None`: no user (embedded sessions) or the superuser.
    role: Option<&'a str>,
    /// The role and every role it is a member of, directly or not, and PUBLIC.
    roles: BTreeSet<String>,
}

impl<'a> Access<'a> {
    pub(crate) fn new(state: &'a CatalogState, config: &'a ConfigRoles, role: Option<&'a str>) -> Self {
        let mut roles = BTreeSet::from([PUBLIC_ROLE.to_string()]);
        if let Some(r) = role {
            roles.insert(r.to_string());
            loop {
                let before = roles.len();
                for g in &state.grants {
                    if let GrantObject::Role(member_of) = &g.object {
                        if roles.contains(&g.grantee) {
                            roles.insert(member_of.clone());
                        }
                    }
                }
                if roles.len() == before {
                    break;
                }
            }
        }
        Access { state, config, role, roles }
    }

    pub(crate) fn superuser(&self) -> bool {
        match self.role {
            None => true,
            Some(r) => self.config.superusers.contains(r) || self.state.roles.get(r).is_some_and(|d| d.superuser),
        }
    }

    fn owns(&self, owner: &Option<String>) -> bool {
        self.superuser() || owner.as_ref().is_some_and(|o| self.roles.contains(o))
    }

    fn member_of(&self, role: &str) -> bool {
        self.superuser() || self.roles.contains(role)
    }

    fn held(&self, object: &GrantObject, privilege: &str, with_option: bool) -> bool {
        self.state.grants.iter().any(|g| {
            &g.object == object && g.privilege == privilege && self.roles.contains(&g.grantee) && (!with_option || g.grant_option)
        })
    }

    fn table_owner(&self, database: &str, name: &str) -> Option<Option<String>> {
        if let Some(t) = self.state.table(database, name) {
            return Some(t.owner.clone());
        }
        self.state.view(database, name).map(|v| v.owner.clone())
    }

    /// Whether the role holds `privilege` on a table or view.
    pub(crate) fn table(&self, database: &str, name: &str, privilege: &str) -> bool {
        let database = bowman_catalog::canonical_database(database);
        if self.superuser() {
            return true;
        }
        if privilege != "SELECT" && !self.owner_may_write_files(database, name) {
            return false;
        }
        if self.table_owner(database, name).is_some_and(|o| self.owns(&o)) {
            return true;
        }
        let table = GrantObject::Table { database: database.to_string(), name: name.to_string() };
        self.held(&table, privilege, false) || self.held(&GrantObject::Database(database.to_string()), privilege, false)
    }

    /// Writes to an external table with a local LOCATION write server files: allowed only when
    /// the table's owner may (a superuser or a member of pg_write_server_files).
    fn owner_may_write_files(&self, database: &str, name: &str) -> bool {
        let Some(t) = self.state.table(database, name) else { return true };
        let local = t.kind == bowman_catalog::TableKind::External && t.location.as_deref().is_some_and(|l| l.starts_with("file:"));
        if !local {
            return true;
        }
        match &t.owner {
            None => true,
            Some(owner) => Access::new(self.state, self.config, Some(owner)).member_of(WRITE_SERVER_FILES),
        }
    }

    fn table_grantable(&self, database: &str, name: &str, privilege: &str) -> bool {
        if self.superuser() || self.table_owner(database, name).is_some_and(|o| self.owns(&o)) {
            return true;
        }
        let table = GrantObject::Table { database: database.to_string(), name: name.to_string() };
        self.held(&table, privilege, true) || self.held(&GrantObject::Database(database.to_string()), privilege, true)
    }

    fn database_owner(&self, database: &str) -> Option<String> {
        self.state.database(database).and_then(|d| d.def.owner.clone())
    }

    /// Whether the role holds `privilege` (CREATE, USAGE) on a database.
    pub(crate) fn database(&self, database: &str, privilege: &str) -> bool {
        let database = bowman_catalog::canonical_database(database);
        self.owns(&self.database_owner(database)) || self.held(&GrantObject::Database(database.to_string()), privilege, false)
    }

    fn attribute(&self, pick: impl Fn(&RoleDef) -> bool) -> bool {
        self.superuser() || self.role.and_then(|r| self.state.roles.get(r)).is_some_and(pick)
    }
}

/// The statement a role was refused (42501).
pub(crate) fn denied(message: impl Into<String>) -> BowmanError {
    BowmanError::PermissionDenied(message.into())
}

fn role_exists(state: &CatalogState, config: &ConfigRoles, role: &str) -> bool {
    role == PUBLIC_ROLE || PREDEFINED_ROLES.contains(&role) || state.roles.contains_key(role) || config.users.contains(role)
}

impl Session {
    /// Run this session's statements as `user` (the front ends call this once the client has
    /// authenticated). Checks follow the catalog as it changes: grants made by any session or
    /// node apply to the next statement.
    pub fn set_user(&mut self, user: &str) {
        self.identify(user, false);
    }

    /// Run this session as the superuser, under the name the client gave: a server without
    /// users trusts its (loopback) clients, as PostgreSQL's `trust` does. What it creates
    /// belongs to the superuser.
    pub fn set_trusted_user(&mut self, user: &str) {
        self.identify(user, true);
    }

    fn identify(&mut self, user: &str, trusted: bool) {
        self.user = Some(user.to_string());
        self.trusted = trusted;
        let scope = AccessScope { role: self.role().map(str::to_string) };
        self.ctx.state_ref().write().config_mut().options_mut().extensions.insert(scope);
        self.ctx.register_udf(has_table_privilege(self.engine.clone(), self.role().map(str::to_string)));
        self.ctx.register_udf(user_function("current_user", user));
        self.ctx.register_udf(user_function("session_user", user));
        self.ctx.register_udf(user_function("user", user));
    }

    /// The user this session runs as (`None`: no user, as in embedded use).
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The role privileges are checked for: `None` for the superuser (no user, or trusted).
    fn role(&self) -> Option<&str> {
        if self.trusted { None } else { self.user.as_deref() }
    }

    /// Check what this session's role may do, against the current catalog snapshot.
    pub(crate) fn check<T>(&self, f: impl FnOnce(&Access<'_>) -> T) -> T {
        let snapshot = self.engine.catalog.snapshot();
        let config = self.engine.config_roles.read().expect("config roles").clone();
        let access = Access::new(&snapshot, &config, self.role());
        f(&access)
    }

    /// The owner new objects get (`None`: the superuser).
    pub(crate) fn owner(&self) -> Option<String> {
        self.role().map(str::to_string)
    }

    /// A local LOCATION (`file://...`) is the server's file system: only superusers and members
    /// of pg_read_server_files (to read) or pg_write_server_files (to write) may name one.
    pub(crate) fn require_server_files(&self, location: &str, write: bool) -> Result<()> {
        if !location.starts_with("file:") {
            return Ok(());
        }
        let role = if write { WRITE_SERVER_FILES } else { READ_SERVER_FILES };
        if self.check(|a| a.member_of(role)) {
            return Ok(());
        }
        let verb = if write { "write" } else { "read" };
        Err(denied(format!(
            "permission denied to {verb} server files: LOCATION '{location}' is on the server; only superusers and members of {role} may use a local LOCATION"
        )))
    }

    /// CREATE TABLE / VIEW in `database`: its owner, or CREATE on it.
    pub(crate) fn require_create_in(&self, database: &str) -> Result<()> {
        if self.check(|a| a.database(database, "CREATE")) {
            return Ok(());
        }
        Err(denied(format!("permission denied for schema {}", schema_name(database))))
    }

    /// DROP, ALTER, RENAME of a table or view: its owner.
    pub(crate) fn require_table_owner(&self, database: &str, name: &str) -> Result<()> {
        let database = bowman_catalog::canonical_database(database);
        let allowed = self.check(|a| match a.table_owner(database, name) {
            Some(owner) => a.owns(&owner),
            // Missing: the statement reports that itself.
            None => true,
        });
        if allowed {
            return Ok(());
        }
        let kind = if self.engine.catalog.snapshot().view(database, name).is_some() { "view" } else { "table" };
        Err(denied(format!("must be owner of {kind} {name}")))
    }

    pub(crate) fn require_database_owner(&self, database: &str) -> Result<()> {
        let allowed = self.check(|a| a.state.database(database).is_none() || a.owns(&a.database_owner(database)));
        if allowed { Ok(()) } else { Err(denied(format!("must be owner of schema {database}"))) }
    }

    pub(crate) fn require_create_db(&self) -> Result<()> {
        if self.check(|a| a.attribute(|r| r.create_db)) {
            return Ok(());
        }
        Err(denied("permission denied to create database: CREATEDB or SUPERUSER is needed"))
    }

    /// A privilege on a table, for statements Bowman runs itself (COPY FROM, INSERT OVERWRITE).
    pub(crate) fn require_table(&self, database: &str, name: &str, privilege: &str) -> Result<()> {
        if self.check(|a| a.table(database, name, privilege)) {
            return Ok(());
        }
        Err(denied(format!("permission denied for table {name}")))
    }

    /// DROP FUNCTION and CREATE OR REPLACE FUNCTION: the function's owner.
    pub(crate) fn require_function_owner(&self, name: &str) -> Result<()> {
        let allowed = self.check(|a| a.state.functions.get(name).is_none_or(|f| a.owns(&f.owner)));
        if allowed { Ok(()) } else { Err(denied(format!("must be owner of function {name}"))) }
    }
}

fn schema_name(database: &str) -> &str {
    if database == bowman_catalog::DEFAULT_DATABASE { bowman_catalog::PUBLIC_SCHEMA } else { database }
}

/// The analyzer rule that checks every plan a session runs against its role's privileges.
#[derive(Debug)]
pub(crate) struct CheckPrivileges {
    pub catalog: Arc<bowman_catalog::Catalog>,
    pub opened: Arc<Opened>,
    pub config: Arc<RwLock<ConfigRoles>>,
}

impl AnalyzerRule for CheckPrivileges {
    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> datafusion::error::Result<LogicalPlan> {
        let Some(scope) = config.extensions.get::<AccessScope>() else { return Ok(plan) };
        let snapshot = self.catalog.snapshot();
        let roles = self.config.read().expect("config roles").clone();
        let access = Access::new(&snapshot, &roles, scope.role.as_deref());
        if access.superuser() {
            return Ok(plan);
        }
        let mut refused: Option<BowmanError> = None;
        let mut need = |provider: &Arc<dyn TableProvider>, privileges: &[&str]| -> bool {
            let Some((database, name)) = self.opened.lookup(provider) else { return true };
            for p in privileges {
                if !access.table(&database, &name, p) {
                    refused = Some(denied(format!("permission denied for table {name}")));
                    return false;
                }
            }
            true
        };
        plan.apply_with_subqueries(|node| {
            let ok = match node {
                LogicalPlan::TableScan(scan) => match datafusion::datasource::source_as_provider(&scan.source) {
                    Ok(p) => need(&p, &["SELECT"]),
                    Err(_) => true,
                },
                LogicalPlan::Dml(dml) => {
                    let privileges: &[&str] = match &dml.op {
                        WriteOp::Insert(datafusion::logical_expr::dml::InsertOp::Append) => &["INSERT"],
                        WriteOp::Insert(_) => &["INSERT", "DELETE"],
                        WriteOp::Update => &["UPDATE"],
                        WriteOp::Delete => &["DELETE"],
                        WriteOp::Truncate => &["TRUNCATE"],
                        _ => &["INSERT", "UPDATE", "DELETE"],
                    };
                    match datafusion::datasource::source_as_provider(&dml.target) {
                        Ok(p) => need(&p, privileges),
                        Err(_) => true,
                    }
                }
                // Bowman's write to a file table (an overwrite removes rows as well).
                LogicalPlan::Extension(e) => match e.node.as_any().downcast_ref::<crate::plan::write::WriteNode>() {
                    // CREATE TABLE ... AS SELECT: the table is new, and creating it needed CREATE.
                    Some(w) if w.commit.creates() => true,
                    Some(w) if w.commit.mode.replaces() => need(&w.provider, &["INSERT", "DELETE"]),
                    Some(w) => need(&w.provider, &["INSERT"]),
                    None => true,
                },
                _ => true,
            };
            Ok(if ok { TreeNodeRecursion::Continue } else { TreeNodeRecursion::Stop })
        })?;
        match refused {
            Some(e) => Err(DataFusionError::External(Box::new(e))),
            None => Ok(plan),
        }
    }

    fn name(&self) -> &str {
        "check_privileges"
    }
}

/// Inside a view, the tables it reads are checked against the view's owner.
pub(crate) fn enter_view(state: &mut datafusion::execution::session_state::SessionState, owner: &Option<String>) {
    let options = state.config_mut().options_mut();
    if options.extensions.get::<AccessScope>().is_some() {
        options.extensions.insert(AccessScope { role: owner.clone() });
    }
}

// ---------------------------------------------------------------------------------------------
// Roles: CREATE / ALTER / DROP ROLE|USER.

/// The attributes a CREATE or ALTER ROLE statement sets (`None`: not mentioned).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleOptions {
    pub superuser: Option<bool>,
    pub login: Option<bool>,
    pub create_role: Option<bool>,
    pub create_db: Option<bool>,
    pub password: Option<String>,
}

impl RoleOptions {
    /// Parse `[WITH] option ...` after the role name.
    pub(crate) fn parse(parser: &mut Parser<'_>) -> std::result::Result<Self, ParserError> {
        let mut o = RoleOptions::default();
        let _ = parser.parse_keyword(Keyword::WITH);
        loop {
            let token = parser.peek_token().token;
            let word = match &token {
                Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
                _ => break,
            };
            let flag = |o: &mut Option<bool>, v: bool| *o = Some(v);
            match word.as_str() {
                "SUPERUSER" => flag(&mut o.superuser, true),
                "NOSUPERUSER" => flag(&mut o.superuser, false),
                "LOGIN" => flag(&mut o.login, true),
                "NOLOGIN" => flag(&mut o.login, false),
                "CREATEROLE" => flag(&mut o.create_role, true),
                "NOCREATEROLE" => flag(&mut o.create_role, false),
                "CREATEDB" => flag(&mut o.create_db, true),
                "NOCREATEDB" => flag(&mut o.create_db, false),
                // Accepted and meaningless here: roles always inherit, nothing replicates.
                "INHERIT" | "NOINHERIT" | "NOREPLICATION" | "NOBYPASSRLS" => {}
                "PASSWORD" => {
                    parser.next_token();
                    match parser.next_token().token {
                        Token::SingleQuotedString(p) => o.password = Some(p),
                        other => return Err(ParserError::ParserError(format!("PASSWORD takes a quoted string, found {other}"))),
                    }
                    continue;
                }
                _ => break,
            }
            parser.next_token();
        }
        Ok(o)
    }
}

/// `CREATE ROLE|USER` (`create`) or `ALTER ROLE|USER`.
pub(crate) async fn create_or_alter_role(
    session: &mut Session,
    name: String,
    options: RoleOptions,
    if_not_exists: bool,
    create: bool,
    user: bool,
) -> Result<Output> {
    if PREDEFINED_ROLES.contains(&name.as_str()) || name.eq_ignore_ascii_case(PUBLIC_ROLE) || name.starts_with("pg_") {
        return Err(BowmanError::ReservedName(format!("role name \"{name}\" is reserved")));
    }
    let hash = match &options.password {
        Some(p) => {
            let hasher = session
                .engine
                .password_hasher
                .ok_or_else(|| BowmanError::NotSupported("users in this server's catalog".into()))?;
            Some(hasher(p))
        }
        None => None,
    };
    let snapshot = session.engine.catalog.snapshot();
    let config = session.engine.config_roles.read().expect("config roles").clone();
    let access = Access::new(&snapshot, &config, session.role());
    let superuser = access.superuser();
    let create_role = access.attribute(|r| r.create_role);
    if config.users.contains(&name) {
        return Err(denied(format!("role \"{name}\" is defined in bowman.toml; change it there")));
    }
    let tag = if create { "CREATE ROLE" } else { "ALTER ROLE" };
    if create {
        if !create_role {
            return Err(denied("permission denied to create role: CREATEROLE or SUPERUSER is needed"));
        }
        if options.superuser == Some(true) && !superuser {
            return Err(denied("permission denied to create role: only superusers may create superusers"));
        }
        let role = RoleDef {
            name: name.clone(),
            superuser: options.superuser.unwrap_or(false),
            login: options.login.unwrap_or(user),
            create_role: options.create_role.unwrap_or(false),
            create_db: options.create_db.unwrap_or(false),
        };
        session.engine.catalog.apply(CatalogChange::CreateRole { role, password_hash: hash, if_not_exists }).await?;
        return Ok(Output::command(tag));
    }
    let current = snapshot.roles.get(&name).cloned().ok_or_else(|| bowman_catalog::CatalogError::UserNotFound(name.clone()))?;
    let own_password_only = session.role() == Some(name.as_str())
        && options.superuser.is_none()
        && options.login.is_none()
        && options.create_role.is_none()
        && options.create_db.is_none();
    if !own_password_only {
        if !create_role {
            return Err(denied(format!("permission denied to alter role \"{name}\": CREATEROLE or SUPERUSER is needed")));
        }
        if (current.superuser || options.superuser == Some(true)) && !superuser {
            return Err(denied(format!("permission denied to alter role \"{name}\": only superusers may alter superusers")));
        }
    }
    let role = RoleDef {
        name,
        superuser: options.superuser.unwrap_or(current.superuser),
        login: options.login.unwrap_or(current.login),
        create_role: options.create_role.unwrap_or(current.create_role),
        create_db: options.create_db.unwrap_or(current.create_db),
    };
    session.engine.catalog.apply(CatalogChange::AlterRole { role, password_hash: hash }).await?;
    Ok(Output::command(tag))
}

/// `DROP ROLE|USER`: CREATEROLE (superusers only for superusers); never one's own role.
pub(crate) async fn drop_role(session: &mut Session, name: String, if_exists: bool) -> Result<Output> {
    let snapshot = session.engine.catalog.snapshot();
    let config = session.engine.config_roles.read().expect("config roles").clone();
    let access = Access::new(&snapshot, &config, session.role());
    if !access.attribute(|r| r.create_role) {
        return Err(denied("permission denied to drop role: CREATEROLE or SUPERUSER is needed"));
    }
    if snapshot.roles.get(&name).is_some_and(|r| r.superuser) && !access.superuser() {
        return Err(denied(format!("permission denied to drop role \"{name}\": only superusers may drop superusers")));
    }
    if session.role() == Some(name.as_str()) {
        return Err(BowmanError::ObjectInUse("current user cannot be dropped".into()));
    }
    session.engine.catalog.apply(CatalogChange::DropUser { name, if_exists }).await?;
    Ok(Output::command("DROP ROLE"))
}

// ---------------------------------------------------------------------------------------------
// GRANT and REVOKE.

/// What a GRANT or REVOKE is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantOn {
    Tables(Vec<TableName>),
    /// `ALL TABLES IN SCHEMA d`: each table and view there now, as in PostgreSQL.
    AllTablesIn(Vec<String>),
    /// `DATABASE d` / `SCHEMA d`.
    Databases(Vec<String>),
}

/// `GRANT privileges ON object TO roles [WITH GRANT OPTION]`, `GRANT role TO roles [WITH ADMIN
/// OPTION]`, and the REVOKE forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantStatement {
    pub grant: bool,
    /// `REVOKE GRANT OPTION FOR` / `REVOKE ADMIN OPTION FOR`.
    pub option_only: bool,
    /// Privilege names, upper-cased; empty for ALL [PRIVILEGES]. Role names for memberships.
    pub privileges: Vec<String>,
    /// `None`: a role membership grant.
    pub on: Option<GrantOn>,
    pub grantees: Vec<String>,
    pub with_option: bool,
}

fn word(parser: &Parser<'_>) -> Option<String> {
    match parser.peek_token().token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

fn eat(parser: &mut Parser<'_>, kw: &str) -> bool {
    if word(parser).as_deref() == Some(kw) {
        parser.next_token();
        true
    } else {
        false
    }
}

fn expect(parser: &mut Parser<'_>, kw: &str) -> std::result::Result<(), ParserError> {
    if eat(parser, kw) {
        return Ok(());
    }
    let t = parser.peek_token();
    Err(ParserError::ParserError(format!("Expected: {kw}, found: {} at Line: {}, Column: {}", t.token, t.span.start.line, t.span.start.column)))
}

fn role_name(parser: &mut Parser<'_>) -> std::result::Result<String, ParserError> {
    if eat(parser, "PUBLIC") {
        return Ok(PUBLIC_ROLE.to_string());
    }
    eat(parser, "GROUP");
    Ok(ident_value(&parser.parse_identifier()?))
}

/// Parse a GRANT or REVOKE statement (the parser is at GRANT / REVOKE).
pub(crate) fn parse_grant(parser: &mut Parser<'_>) -> std::result::Result<GrantStatement, ParserError> {
    let grant = eat(parser, "GRANT");
    if !grant {
        expect(parser, "REVOKE")?;
    }
    let mut option_only = false;
    if !grant && matches!(word(parser).as_deref(), Some("GRANT") | Some("ADMIN")) {
        parser.next_token();
        expect(parser, "OPTION")?;
        expect(parser, "FOR")?;
        option_only = true;
    }
    let mut privileges = Vec::new();
    let mut all = false;
    if eat(parser, "ALL") {
        eat(parser, "PRIVILEGES");
        all = true;
    } else {
        loop {
            match parser.next_token().token {
                Token::Word(w) => privileges.push(if w.quote_style.is_some() { w.value.clone() } else { w.value.to_ascii_uppercase() }),
                other => return Err(ParserError::ParserError(format!("Expected: a privilege or role name, found: {other}"))),
            }
            if parser.peek_token().token == Token::LParen {
                return Err(ParserError::ParserError("column privileges (GRANT SELECT (col) ...) are not supported; grant on the table".into()));
            }
            if !parser.consume_token(&Token::Comma) {
                break;
            }
        }
    }
    let on = if eat(parser, "ON") {
        Some(if eat(parser, "ALL") {
            expect(parser, "TABLES")?;
            expect(parser, "IN")?;
            expect(parser, "SCHEMA")?;
            GrantOn::AllTablesIn(names(parser)?)
        } else if eat(parser, "DATABASE") || eat(parser, "SCHEMA") {
            GrantOn::Databases(names(parser)?)
        } else {
            eat(parser, "TABLE");
            let mut tables = Vec::new();
            loop {
                tables.push(table_name_from(&parser.parse_object_name(false)?)?);
                if !parser.consume_token(&Token::Comma) {
                    break;
                }
            }
            GrantOn::Tables(tables)
        })
    } else {
        if all {
            return Err(ParserError::ParserError("Expected: ON after ALL PRIVILEGES".into()));
        }
        // GRANT role TO member: role names as written (case-folded).
        privileges = privileges.iter().map(|p| p.to_lowercase()).collect();
        None
    };
    if grant { expect(parser, "TO")? } else { expect(parser, "FROM")? }
    let mut grantees = Vec::new();
    loop {
        grantees.push(role_name(parser)?);
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    let mut with_option = false;
    if grant && eat(parser, "WITH") {
        if !(eat(parser, "GRANT") || eat(parser, "ADMIN")) {
            return Err(ParserError::ParserError("Expected: GRANT OPTION or ADMIN OPTION after WITH".into()));
        }
        expect(parser, "OPTION")?;
        with_option = true;
    }
    if eat(parser, "GRANTED") {
        expect(parser, "BY")?;
        role_name(parser)?;
    }
    if !grant {
        let _ = eat(parser, "CASCADE") || eat(parser, "RESTRICT");
    }
    Ok(GrantStatement { grant, option_only, privileges, on, grantees, with_option })
}

fn names(parser: &mut Parser<'_>) -> std::result::Result<Vec<String>, ParserError> {
    let mut out = Vec::new();
    loop {
        out.push(bowman_catalog::canonical_database(&ident_value(&parser.parse_identifier()?)).to_string());
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    Ok(out)
}

/// Run a GRANT or REVOKE.
pub(crate) async fn execute_grant(session: &mut Session, g: GrantStatement) -> Result<Output> {
    let tag = if g.grant { "GRANT" } else { "REVOKE" };
    let snapshot = session.engine.catalog.snapshot();
    let config = session.engine.config_roles.read().expect("config roles").clone();
    let access = Access::new(&snapshot, &config, session.role());
    // As in PostgreSQL, what an owner or a superuser grants is granted by the object's owner.
    let grantor = session.role().unwrap_or(SUPERUSER_NAME).to_string();
    for grantee in &g.grantees {
        if !role_exists(&snapshot, &config, grantee) {
            return Err(bowman_catalog::CatalogError::UserNotFound(grantee.clone()).into());
        }
    }
    let mut grants = Vec::new();
    match &g.on {
        None => {
            // Role membership: superusers, or CREATEROLE for ordinary roles, or ADMIN OPTION.
            for role in &g.privileges {
                if !role_exists(&snapshot, &config, role) || role == PUBLIC_ROLE {
                    return Err(bowman_catalog::CatalogError::UserNotFound(role.clone()).into());
                }
                let object = GrantObject::Role(role.clone());
                let special = PREDEFINED_ROLES.contains(&role.as_str())
                    || snapshot.roles.get(role).is_some_and(|r| r.superuser)
                    || config.superusers.contains(role);
                let allowed = access.superuser()
                    || (!special && access.attribute(|r| r.create_role))
                    || access.held(&object, "MEMBER", true);
                if !allowed {
                    return Err(denied(format!("permission denied to grant role \"{role}\": only superusers and roles with ADMIN OPTION on it may")));
                }
                for grantee in &g.grantees {
                    if grantee == role {
                        return Err(BowmanError::InvalidGrant(format!("role \"{role}\" cannot be a member of itself")));
                    }
                    // No cycles: the role must not already be (indirectly) a member of the grantee.
                    if g.grant && Access::new(&snapshot, &config, Some(role)).roles.contains(grantee) {
                        return Err(BowmanError::InvalidGrant(format!("role \"{grantee}\" is a member of role \"{role}\"")));
                    }
                    grants.push(Grant { object: object.clone(), grantee: grantee.clone(), privilege: "MEMBER".into(), grantor: grantor.clone(), grant_option: g.with_option });
                }
            }
        }
        Some(GrantOn::Databases(databases)) => {
            for db in databases {
                if snapshot.database(db).is_none() {
                    return Err(bowman_catalog::CatalogError::DatabaseNotFound(db.clone()).into());
                }
                // On a database: its own privileges, or table privileges for every table in it.
                let privileges = expand(&g.privileges, &[DATABASE_PRIVILEGES, TABLE_PRIVILEGES].concat(), "database")?;
                let object = GrantObject::Database(db.clone());
                for p in &privileges {
                    let table_privilege = TABLE_PRIVILEGES.iter().any(|(n, _)| n == p);
                    let allowed = access.owns(&access.database_owner(db)) || access.held(&object, p, true);
                    if !allowed {
                        let _ = table_privilege;
                        return Err(denied(format!("permission denied for schema {}", schema_name(db))));
                    }
                    for grantee in &g.grantees {
                        grants.push(Grant { object: object.clone(), grantee: grantee.clone(), privilege: p.clone(), grantor: grantor.clone(), grant_option: g.with_option });
                    }
                }
            }
        }
        Some(on) => {
            let mut tables: Vec<(String, String)> = Vec::new();
            match on {
                GrantOn::Tables(names) => {
                    for t in names {
                        let db = t.database.clone().unwrap_or_else(|| session.current_database());
                        let db = bowman_catalog::canonical_database(&db).to_string();
                        if snapshot.table(&db, &t.name).is_none() && snapshot.view(&db, &t.name).is_none() {
                            return Err(bowman_catalog::CatalogError::TableNotFound(db, t.name.clone()).into());
                        }
                        tables.push((db, t.name.clone()));
                    }
                }
                GrantOn::AllTablesIn(databases) => {
                    for db in databases {
                        let entry = snapshot.database(db).ok_or_else(|| bowman_catalog::CatalogError::DatabaseNotFound(db.clone()))?;
                        for n in entry.tables.keys().chain(entry.views.keys()) {
                            tables.push((db.clone(), n.clone()));
                        }
                    }
                }
                GrantOn::Databases(_) => unreachable!("handled above"),
            }
            let privileges = expand(&g.privileges, TABLE_PRIVILEGES, "table")?;
            for (db, name) in &tables {
                let owner = access.table_owner(db, name).flatten();
                let grantor = if access.owns(&owner) { owner.unwrap_or_else(|| SUPERUSER_NAME.to_string()) } else { grantor.clone() };
                for p in &privileges {
                    if !access.table_grantable(db, name, p) {
                        return Err(denied(format!("permission denied for table {name}")));
                    }
                    for grantee in &g.grantees {
                        let object = GrantObject::Table { database: db.clone(), name: name.clone() };
                        grants.push(Grant { object, grantee: grantee.clone(), privilege: p.clone(), grantor: grantor.clone(), grant_option: g.with_option });
                    }
                }
            }
        }
    }
    if grants.is_empty() {
        return Ok(Output::command(tag));
    }
    let change = if g.grant { CatalogChange::Grant { grants } } else { CatalogChange::Revoke { grants, grant_option_only: g.option_only } };
    session.engine.catalog.apply(change).await?;
    Ok(Output::command(tag))
}

/// The privileges a statement names, checked against those the object has (ALL: every one).
fn expand(named: &[String], known: &[(&str, char)], object: &str) -> Result<Vec<String>> {
    if named.is_empty() {
        return Ok(known.iter().map(|(n, _)| n.to_string()).collect());
    }
    named
        .iter()
        .map(|p| {
            if known.iter().any(|(n, _)| n == p) {
                Ok(p.clone())
            } else {
                let list: Vec<&str> = known.iter().map(|(n, _)| *n).collect();
                Err(BowmanError::InvalidGrant(format!("invalid privilege type {p} for {object}; {object}s take {}", list.join(", "))))
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// What clients see: aclitem text, has_table_privilege, information_schema.table_privileges.

/// A table's ACL as PostgreSQL's `relacl` prints it (`{alice=r/bowman,bowman=arwdD/bowman}`):
/// `None` until something is granted (PostgreSQL's default ACL is NULL).
pub(crate) fn table_acl(state: &CatalogState, database: &str, name: &str) -> Option<Vec<String>> {
    let object = GrantObject::Table { database: database.to_string(), name: name.to_string() };
    let grants: Vec<&Grant> = state.grants.iter().filter(|g| g.object == object).collect();
    if grants.is_empty() {
        return None;
    }
    let owner = state
        .table(database, name)
        .map(|t| t.owner.clone())
        .or_else(|| state.view(database, name).map(|v| v.owner.clone()))
        .flatten()
        .unwrap_or_else(|| SUPERUSER_NAME.to_string());
    let mut items: Vec<String> = Vec::new();
    let all: String = TABLE_PRIVILEGES.iter().map(|(_, c)| *c).collect();
    items.push(format!("{}={all}/{}", acl_role(&owner), acl_role(&owner)));
    let mut by: BTreeSet<(String, String)> = BTreeSet::new();
    for g in &grants {
        by.insert((g.grantee.clone(), g.grantor.clone()));
    }
    for (grantee, grantor) in by {
        if grantee == owner {
            continue;
        }
        let mut letters = String::new();
        for (p, c) in TABLE_PRIVILEGES {
            if let Some(g) = grants.iter().find(|g| g.grantee == grantee && g.grantor == grantor && g.privilege == *p) {
                letters.push(*c);
                if g.grant_option {
                    letters.push('*');
                }
            }
        }
        let who = if grantee == PUBLIC_ROLE { String::new() } else { acl_role(&grantee) };
        items.push(format!("{who}={letters}/{}", acl_role(&grantor)));
    }
    Some(items)
}

/// A role name in aclitem text: quoted when it is not a plain lower-case identifier.
fn acl_role(name: &str) -> String {
    let plain = !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain { name.to_string() } else { format!("\"{}\"", name.replace('"', "\"\"")) }
}

fn user_function(name: &str, user: &str) -> datafusion::logical_expr::ScalarUDF {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    let user = user.to_string();
    create_udf(
        name,
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(user.clone()))))),
    )
}

/// `has_table_privilege([user,] table, privilege)`: what the privilege checks would answer
/// (tables by name; `privilege` may list several, comma-separated, as in PostgreSQL).
fn has_table_privilege(engine: Arc<crate::engine::Engine>, user: Option<String>) -> datafusion::logical_expr::ScalarUDF {
    use datafusion::logical_expr::{Signature, TypeSignature, Volatility};
    let signature = Signature::one_of(vec![TypeSignature::Any(2), TypeSignature::Any(3)], Volatility::Stable);
    datafusion::logical_expr::ScalarUDF::new_from_impl(HasTablePrivilege { signature, engine, user })
}

#[derive(Debug)]
struct HasTablePrivilege {
    signature: datafusion::logical_expr::Signature,
    engine: Arc<crate::engine::Engine>,
    /// The session's user, for the two-argument form.
    user: Option<String>,
}

impl PartialEq for HasTablePrivilege {
    fn eq(&self, other: &Self) -> bool {
        self.user == other.user && Arc::ptr_eq(&self.engine, &other.engine)
    }
}

impl Eq for HasTablePrivilege {}

impl std::hash::Hash for HasTablePrivilege {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.user.hash(state)
    }
}

impl HasTablePrivilege {
    fn answer(&self, user: Option<&str>, table: &str, privilege: &str) -> datafusion::error::Result<bool> {
        let user = user.or(self.user.as_deref());
        let parts: Vec<String> = table.split('.').map(|p| {
            let p = p.trim();
            if p.starts_with('"') { p.trim_matches('"').to_string() } else { p.to_lowercase() }
        }).collect();
        let (database, name) = match parts.as_slice() {
            [name] => (bowman_catalog::DEFAULT_DATABASE.to_string(), name.clone()),
            [.., db, name] => (bowman_catalog::canonical_database(db).to_string(), name.clone()),
            [] => return Ok(false),
        };
        let snapshot = self.engine.catalog.snapshot();
        if snapshot.table(&database, &name).is_none() && snapshot.view(&database, &name).is_none() {
            // Not a Bowman table (a system catalog): readable by everyone, as in PostgreSQL.
            return Ok(true);
        }
        let config = self.engine.config_roles.read().expect("config roles").clone();
        let access = Access::new(&snapshot, &config, user);
        let mut any = false;
        for p in privilege.split(',') {
            let p = p.trim().to_ascii_uppercase();
            let (p, option) = match p.strip_suffix(" WITH GRANT OPTION") {
                Some(base) => (base.trim().to_string(), true),
                None => (p.clone(), false),
            };
            if !TABLE_PRIVILEGES.iter().any(|(n, _)| *n == p) {
                return Err(DataFusionError::External(Box::new(BowmanError::InvalidValue(format!("unrecognized privilege type: \"{p}\"")))));
            }
            any |= if option { access.table_grantable(&database, &name, &p) } else { access.table(&database, &name, &p) };
        }
        Ok(any)
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for HasTablePrivilege {
    fn name(&self) -> &str {
        "has_table_privilege"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _: &[datafusion::arrow::datatypes::DataType]) -> datafusion::error::Result<datafusion::arrow::datatypes::DataType> {
        Ok(datafusion::arrow::datatypes::DataType::Boolean)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::error::Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::arrow::array::{Array, AsArray, BooleanArray};
        use datafusion::arrow::datatypes::DataType;
        use datafusion::logical_expr::ColumnarValue;
        let rows = args.number_rows;
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let mut arrays = Vec::with_capacity(args.args.len());
        for a in &args.args {
            arrays.push(datafusion::arrow::compute::cast(&a.to_array(rows)?, &DataType::Utf8)?);
        }
        let text: Vec<_> = arrays.iter().map(|a| a.as_string::<i32>()).collect();
        let mut out = Vec::with_capacity(rows);
        for i in 0..rows {
            if text.iter().any(|t| t.is_null(i)) {
                out.push(None);
                continue;
            }
            out.push(Some(match text.len() {
                2 => self.answer(None, text[0].value(i), text[1].value(i))?,
                _ => self.answer(Some(text[0].value(i)), text[1].value(i), text[2].value(i))?,
            }));
        }
        let array = BooleanArray::from(out);
        Ok(if scalar && rows == 1 {
            ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&array, 0)?)
        } else {
            ColumnarValue::Array(Arc::new(array))
        })
    }
}

/// `information_schema.table_privileges`: every grant on a table or view (each privilege a
/// row), with the owner's own privileges, as PostgreSQL lists them.
pub(crate) fn table_privileges(state: &CatalogState) -> datafusion::error::Result<Arc<dyn TableProvider>> {
    use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let names = ["grantor", "grantee", "table_catalog", "table_schema", "table_name", "privilege_type", "is_grantable", "with_hierarchy"];
    let mut rows: Vec<[String; 8]> = Vec::new();
    let yes_no = |b: bool| if b { "YES".to_string() } else { "NO".to_string() };
    for (db, entry) in &state.databases {
        let schema = schema_name(db).to_string();
        let objects = entry.tables.values().map(|t| (&t.name, &t.owner)).chain(entry.views.values().map(|v| (&v.name, &v.owner)));
        for (name, owner) in objects {
            let owner = owner.clone().unwrap_or_else(|| SUPERUSER_NAME.to_string());
            for (p, _) in TABLE_PRIVILEGES {
                rows.push([owner.clone(), owner.clone(), crate::engine::CATALOG_NAME.into(), schema.clone(), name.clone(), p.to_string(), yes_no(true), yes_no(*p == "SELECT")]);
            }
            let object = GrantObject::Table { database: db.clone(), name: name.clone() };
            for g in state.grants.iter().filter(|g| g.object == object || g.object == GrantObject::Database(db.clone())) {
                if !TABLE_PRIVILEGES.iter().any(|(n, _)| *n == g.privilege) || g.grantee == owner {
                    continue;
                }
                rows.push([
                    g.grantor.clone(),
                    g.grantee.clone(),
                    crate::engine::CATALOG_NAME.into(),
                    schema.clone(),
                    name.clone(),
                    g.privilege.clone(),
                    yes_no(g.grant_option),
                    yes_no(g.privilege == "SELECT"),
                ]);
            }
        }
    }
    let schema = Arc::new(Schema::new(names.iter().map(|n| Field::new(*n, DataType::Utf8, false)).collect::<Vec<_>>()));
    let columns: Vec<ArrayRef> =
        (0..names.len()).map(|i| Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r[i].clone()))) as ArrayRef).collect();
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(datafusion::datasource::MemTable::try_new(schema, vec![vec![batch]])?))
}
