use thiserror::Error;

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// What can go wrong in the catalog. The variants are the ones a user can act on; store-level
/// failures carry the store's message.
#[derive(Debug, Error)]
pub enum CatalogError {
    #[error("database '{0}' already exists")]
    DatabaseExists(String),
    #[error("database '{0}' does not exist; SHOW DATABASES lists the ones that do")]
    DatabaseNotFound(String),
    #[error("database '{0}' is not empty; drop its tables first or use DROP DATABASE {0} CASCADE")]
    DatabaseNotEmpty(String),
    #[error("the database '{0}' cannot be dropped")]
    ProtectedDatabase(String),
    #[error("table '{0}.{1}' already exists")]
    TableExists(String, String),
    #[error("table '{0}.{1}' does not exist")]
    TableNotFound(String, String),
    /// A table statement named a view (`DROP TABLE v`).
    #[error("\"{0}.{1}\" is not a table; use DROP VIEW to remove a view")]
    NotATable(String, String),
    /// A view statement named a table (`DROP VIEW t`, `CREATE OR REPLACE VIEW t`).
    #[error("\"{0}.{1}\" is not a view; use DROP TABLE to remove a table")]
    NotAView(String, String),
    #[error("role \"{0}\" already exists")]
    UserExists(String),
    #[error("role \"{0}\" does not exist")]
    UserNotFound(String),
    #[error("{0} changed while this statement ran (another write committed first); run it again")]
    Conflict(String),
    #[error("function '{0}' already exists; use CREATE OR REPLACE FUNCTION to replace it")]
    FunctionExists(String),
    #[error("function '{0}' does not exist")]
    FunctionNotFound(String),
    /// DROP ROLE of a role that still owns objects.
    #[error("role \"{0}\" cannot be dropped because it owns {1}; drop them or have a superuser drop them first")]
    RoleInUse(String, String),
    /// A GRANT naming an object that is not there.
    #[error("{0} does not exist")]
    GrantTargetNotFound(String),
    #[error("catalog store error: {0}")]
    Store(String),
    #[error(
        "the catalog was written by a newer Bowman (schema version {found}, this build knows up to {known}); upgrade Bowman"
    )]
    TooNew { found: i64, known: i64 },
    #[error("corrupt catalog entry: {0}")]
    Corrupt(String),
    /// Secret options the configured keys cannot decrypt (a missing or wrong secret key).
    #[error("secret options: {0}")]
    SecretKey(String),
}

impl From<rusqlite::Error> for CatalogError {
    fn from(e: rusqlite::Error) -> Self {
        CatalogError::Store(format!("sqlite: {e}"))
    }
}

impl From<tokio_postgres::Error> for CatalogError {
    fn from(e: tokio_postgres::Error) -> Self {
        // tokio-postgres' Display of a DbError is just "db error"; the detail is in the source.
        let msg = match e.as_db_error() {
            Some(db) => format!("postgres: {} ({})", db.message(), db.code().code()),
            None => format!("postgres: {e}"),
        };
        CatalogError::Store(msg)
    }
}

impl From<serde_json::Error> for CatalogError {
    fn from(e: serde_json::Error) -> Self {
        CatalogError::Corrupt(e.to_string())
    }
}
