use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A Spark-style database (a schema, in PostgreSQL terms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseDef {
    pub name: String,
    pub comment: Option<String>,
    /// Where managed tables of this database live, when not under the warehouse default.
    pub location: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// The role that created it (`None`: created before Bowman had owners, or by a session
    /// without a user; owned by the superuser).
    #[serde(default)]
    pub owner: Option<String>,
}

/// One column. `data_type` is the Spark SQL type text (`INT`, `STRING`, `DECIMAL(10,2)`,
/// `ARRAY<STRING>`, ...): stable across Arrow upgrades and exactly what `SHOW CREATE TABLE` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub data_type: String,
    #[serde(default = "yes")]
    pub nullable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

fn yes() -> bool {
    true
}

/// Managed tables own their data (dropping the table deletes it); external tables only point at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TableKind {
    Managed,
    External,
}

impl TableKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            TableKind::Managed => "MANAGED",
            TableKind::External => "EXTERNAL",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "MANAGED" => Some(TableKind::Managed),
            "EXTERNAL" => Some(TableKind::External),
            _ => None,
        }
    }
}

/// A table as the catalog stores it. Partition columns are the last columns of `columns`, in the
/// order of `partition_columns` (Spark's and DataFusion's convention).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    pub database: String,
    pub name: String,
    pub kind: TableKind,
    /// The `USING` name: `parquet`, `json`, `csv`, ...
    pub format: String,
    /// URL of the data (`file:///...`, `s3://bucket/prefix`); set for every file table.
    pub location: Option<String>,
    pub columns: Vec<ColumnDef>,
    pub partition_columns: Vec<String>,
    /// Non-secret options, shown by `SHOW CREATE TABLE`.
    pub options: BTreeMap<String, String>,
    /// Options the connector marks secret. Stored apart from the others and never displayed.
    pub secret_options: BTreeMap<String, String>,
    pub comment: Option<String>,
    pub created_at: i64,
    /// Whether the catalog, not a directory listing, says which data is live. Tracked tables are
    /// written in commit directories (`<partition>/_commit=<id>/`) and a write becomes visible
    /// in one catalog transaction, so readers see a partition's old or new contents, never a mix.
    pub tracked: bool,
    /// For tracked tables: the live commit directories. For external file tables: the files
    /// Bowman wrote there that are live (`dir` is the file's path relative to the location).
    pub live: Vec<LiveDir>,
    /// For external file tables: files an overwrite replaced (paths relative to the location).
    /// Readers no longer see them; Bowman deletes them once running statements are done.
    pub retired: Vec<RetiredFile>,
    /// The role that created it; `None` means the superuser.
    pub owner: Option<String>,
    /// Moved by one by every commit that changes which data of this table is live (and by
    /// nothing else: DDL moves the catalog's schema version). A write that replaces data
    /// expects the version it planned against, so a concurrent commit makes it fail (40001)
    /// instead of being lost; nodes reload a table only when its version moved.
    pub data_version: i64,
}

/// How far a source (a Kafka topic's partition, say) has been read: committed in the same
/// catalog transaction as the data read from it, so a restart resumes exactly there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Checkpoint {
    /// The source's name as the job that reads it knows it.
    pub source: String,
    pub partition: String,
    /// The next offset to read.
    pub offset: i64,
}

/// A file of an external table that an overwrite replaced, waiting to be deleted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RetiredFile {
    /// Relative to the table's location (`dt=2018-03-05/part-00000.parquet`).
    pub path: String,
    /// Milliseconds since the Unix epoch.
    pub retired_at: i64,
}

/// One live commit directory of a tracked table: `<location>/<partition>/_commit=<dir>/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LiveDir {
    /// The partition path (`dt=2018-03-05`, `country=US/dt=2018-03-05`), empty when unpartitioned.
    pub partition: String,
    /// The `_commit` value: unique per write and partition.
    pub dir: String,
}

impl TableDef {
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.database, self.name)
    }

    /// All options, secrets included, for the connector that opens the table.
    pub fn all_options(&self) -> BTreeMap<String, String> {
        let mut all = self.options.clone();
        all.extend(self.secret_options.clone());
        all
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseEntry {
    pub def: DatabaseDef,
    pub tables: BTreeMap<String, TableDef>,
    /// Views share the tables' namespace: a name is a table or a view, never both.
    pub views: BTreeMap<String, ViewDef>,
}

/// A view (`CREATE VIEW v AS SELECT ...`): a stored query, planned again each time it is read.
///
/// As in Spark, the catalog keeps the view's columns as they were when it was created, and a
/// read casts the query's output to them: a view over a table whose columns changed fails with
/// a clear error instead of silently returning other columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewDef {
    pub database: String,
    pub name: String,
    /// The query as the user wrote it (`SELECT ...`), in Bowman's dialect.
    pub query: String,
    /// The database unqualified names in `query` refer to: the current database of the session
    /// that created the view (PostgreSQL's and Spark's binding rule).
    pub query_database: String,
    /// The view's columns: names from the column list, else from the query; Spark types.
    pub columns: Vec<ColumnDef>,
    pub comment: Option<String>,
    pub created_at: i64,
    /// The role that created it; `None` means the superuser. Reading a view checks the tables
    /// it reads against its owner's privileges, as PostgreSQL does.
    pub owner: Option<String>,
}

impl ViewDef {
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.database, self.name)
    }
}

/// A consistent picture of the whole catalog at one store version.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CatalogState {
    /// The position in the catalog's log this snapshot has every change up to (DDL and data
    /// commits alike; tables changed later are reloaded one by one, see `Catalog::sync`).
    pub version: i64,
    /// Moved by DDL only (tables, views, databases, roles, grants, functions): what a plan
    /// depends on besides the data versions of the tables it reads.
    pub schema_version: i64,
    pub databases: BTreeMap<String, DatabaseEntry>,
    /// Users created with CREATE USER: name -> password hash (`SCRAM-SHA-256$...`).
    pub users: BTreeMap<String, String>,
    /// Functions created with `CREATE FUNCTION name USING kind OPTIONS (...)`, by name.
    pub functions: BTreeMap<String, FunctionDef>,
    /// Every role of the catalog (CREATE USER / CREATE ROLE) with its attributes; `users`
    /// holds the password hashes of those that may log in.
    pub roles: BTreeMap<String, RoleDef>,
    /// Privileges granted with GRANT (and role memberships), in a stable order.
    pub grants: Vec<Grant>,
}

/// A role's attributes (PostgreSQL's, in the small): `CREATE ROLE r [SUPERUSER] [LOGIN]
/// [CREATEROLE] [CREATEDB]`. `CREATE USER` is `CREATE ROLE ... LOGIN`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoleDef {
    pub name: String,
    pub superuser: bool,
    pub login: bool,
    pub create_role: bool,
    pub create_db: bool,
}

/// What a grant is on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GrantObject {
    /// A table or a view (they share one namespace).
    Table { database: String, name: String },
    /// A Bowman database (a PostgreSQL schema): `CREATE`, `USAGE`.
    Database(String),
    /// Membership of a role (`GRANT role TO member`): privilege `MEMBER`.
    Role(String),
}

impl GrantObject {
    /// The stored form: (kind, database, name).
    pub fn key(&self) -> (&'static str, &str, &str) {
        match self {
            GrantObject::Table { database, name } => ("table", database, name),
            GrantObject::Database(d) => ("database", d, ""),
            GrantObject::Role(r) => ("role", "", r),
        }
    }

    pub fn from_key(kind: &str, database: String, name: String) -> Option<Self> {
        match kind {
            "table" => Some(GrantObject::Table { database, name }),
            "database" => Some(GrantObject::Database(database)),
            "role" => Some(GrantObject::Role(name)),
            _ => None,
        }
    }
}

/// One privilege held by one role (or `PUBLIC`) on one object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant {
    pub object: GrantObject,
    /// A role name, or `PUBLIC` for every role.
    pub grantee: String,
    /// `SELECT`, `INSERT`, `UPDATE`, `DELETE`, `TRUNCATE` (tables), `CREATE`, `USAGE`
    /// (databases), `MEMBER` (roles).
    pub privilege: String,
    /// Who granted it (for `\dp`'s `grantee=r/grantor`).
    pub grantor: String,
    /// WITH GRANT OPTION (WITH ADMIN OPTION for roles): the grantee may grant it on.
    pub grant_option: bool,
}

/// The grantee that stands for every role.
pub const PUBLIC_ROLE: &str = "PUBLIC";

/// A function whose implementation Bowman builds from data (`CREATE FUNCTION geodata USING
/// geodata OPTIONS (states 's3://...', ...)`): the kind names the implementation, the options
/// where its data lives.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FunctionDef {
    pub name: String,
    pub kind: String,
    pub options: BTreeMap<String, String>,
    /// Options holding secrets (S3 keys), stored apart and never displayed.
    pub secret_options: BTreeMap<String, String>,
    pub created_at: i64,
    /// The role that created it; `None` means the superuser.
    #[serde(default)]
    pub owner: Option<String>,
}

impl FunctionDef {
    /// All options, secrets included, for whatever builds the function.
    pub fn all_options(&self) -> BTreeMap<String, String> {
        let mut all = self.options.clone();
        all.extend(self.secret_options.clone());
        all
    }
}

impl CatalogState {
    /// A database by name; `public` names the default database (see
    /// [`canonical_database`](crate::canonical_database)).
    pub fn database(&self, name: &str) -> Option<&DatabaseEntry> {
        self.databases.get(crate::canonical_database(name))
    }

    pub fn table(&self, database: &str, name: &str) -> Option<&TableDef> {
        self.database(database)?.tables.get(name)
    }

    pub fn view(&self, database: &str, name: &str) -> Option<&ViewDef> {
        self.database(database)?.views.get(name)
    }

    /// Whether `role` may log in: bowman.toml's users are not in the catalog (always may);
    /// catalog roles need LOGIN.
    pub fn may_log_in(&self, role: &str) -> bool {
        self.roles.get(role).is_none_or(|r| r.login)
    }

    /// The first object `role` owns, described, if any (DROP ROLE refuses while there is one).
    pub fn owned_by(&self, role: &str) -> Option<String> {
        let mine = |o: &Option<String>| o.as_deref() == Some(role);
        for (name, d) in &self.databases {
            if mine(&d.def.owner) {
                return Some(format!("database {name}"));
            }
            if let Some(t) = d.tables.values().find(|t| mine(&t.owner)) {
                return Some(format!("table {}", t.qualified_name()));
            }
            if let Some(v) = d.views.values().find(|v| mine(&v.owner)) {
                return Some(format!("view {}", v.qualified_name()));
            }
        }
        self.functions.values().find(|f| mine(&f.owner)).map(|f| format!("function {}", f.name))
    }
}
