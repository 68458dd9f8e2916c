//! The catalog's stored format, as an ordered list of migrations. Both stores run the same SQL
//! (kept to the subset SQLite and PostgreSQL share). Never edit a released migration: add one.

pub(crate) struct Migration {
    pub version: i64,
    pub description: &'static str,
    pub statements: &'static [&'static str],
}

pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "databases, tables and their secret options",
    statements: &[
        "CREATE TABLE bowman_catalog_version (id INTEGER PRIMARY KEY, version BIGINT NOT NULL)",
        "INSERT INTO bowman_catalog_version (id, version) VALUES (1, 0)",
        "CREATE TABLE bowman_databases (
            name TEXT PRIMARY KEY,
            comment TEXT,
            location TEXT,
            created_at BIGINT NOT NULL
        )",
        "CREATE TABLE bowman_tables (
            database_name TEXT NOT NULL REFERENCES bowman_databases(name),
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            format TEXT NOT NULL,
            location TEXT,
            columns TEXT NOT NULL,
            partition_columns TEXT NOT NULL,
            options TEXT NOT NULL,
            comment TEXT,
            created_at BIGINT NOT NULL,
            PRIMARY KEY (database_name, name)
        )",
        "CREATE TABLE bowman_table_secrets (
            database_name TEXT NOT NULL,
            name TEXT NOT NULL,
            options TEXT NOT NULL,
            PRIMARY KEY (database_name, name),
            FOREIGN KEY (database_name, name) REFERENCES bowman_tables(database_name, name)
        )",
    ],
}, Migration {
    version: 2,
    description: "tracked tables: live commit directories committed atomically",
    statements: &[
        "ALTER TABLE bowman_tables ADD COLUMN tracked INTEGER NOT NULL DEFAULT 0",
        "CREATE TABLE bowman_live_dirs (
            database_name TEXT NOT NULL,
            table_name TEXT NOT NULL,
            dir TEXT NOT NULL,
            partition_path TEXT NOT NULL,
            PRIMARY KEY (database_name, table_name, dir),
            FOREIGN KEY (database_name, table_name) REFERENCES bowman_tables(database_name, name)
        )",
    ],
}, Migration {
    version: 3,
    description: "users created with CREATE USER (password hashes, never passwords)",
    statements: &[
        "CREATE TABLE bowman_users (
            name TEXT PRIMARY KEY,
            password_hash TEXT NOT NULL,
            created_at BIGINT NOT NULL
        )",
    ],
}, Migration {
    version: 4,
    description: "functions created with CREATE FUNCTION ... USING (their options; secrets apart)",
    statements: &[
        "CREATE TABLE bowman_functions (
            name TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            options TEXT NOT NULL,
            secret_options TEXT NOT NULL,
            created_at BIGINT NOT NULL
        )",
    ],
}, Migration {
    version: 5,
    description: "views created with CREATE VIEW (their query text and columns)",
    statements: &[
        "CREATE TABLE bowman_views (
            database_name TEXT NOT NULL REFERENCES bowman_databases(name),
            name TEXT NOT NULL,
            query TEXT NOT NULL,
            query_database TEXT NOT NULL,
            columns TEXT NOT NULL,
            comment TEXT,
            created_at BIGINT NOT NULL,
            PRIMARY KEY (database_name, name)
        )",
    ],
}, Migration {
    version: 6,
    description: "files an overwrite of an external table retired: hidden from readers until deleted",
    statements: &[
        "CREATE TABLE bowman_retired_files (
            database_name TEXT NOT NULL,
            table_name TEXT NOT NULL,
            path TEXT NOT NULL,
            retired_at BIGINT NOT NULL,
            PRIMARY KEY (database_name, table_name, path),
            FOREIGN KEY (database_name, table_name) REFERENCES bowman_tables(database_name, name)
        )",
    ],
}, Migration {
    version: 7,
    description: "privileges: role attributes, owners, and grants (GRANT/REVOKE, role membership)",
    statements: &[
        "ALTER TABLE bowman_users ADD COLUMN superuser INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE bowman_users ADD COLUMN can_login INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE bowman_users ADD COLUMN create_role INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE bowman_users ADD COLUMN create_db INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE bowman_databases ADD COLUMN owner TEXT",
        "ALTER TABLE bowman_tables ADD COLUMN owner TEXT",
        "ALTER TABLE bowman_views ADD COLUMN owner TEXT",
        "ALTER TABLE bowman_functions ADD COLUMN owner TEXT",
        "CREATE TABLE bowman_grants (
            object_kind TEXT NOT NULL,
            database_name TEXT NOT NULL,
            object_name TEXT NOT NULL,
            grantee TEXT NOT NULL,
            privilege TEXT NOT NULL,
            grantor TEXT NOT NULL,
            grant_option INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (object_kind, database_name, object_name, grantee, privilege)
        )",
    ],
}, Migration {
    version: 8,
    description: "versions per table: a schema version, a data version per table, a log of what each commit touched, source checkpoints",
    statements: &[
        // `version` stays the position in the log (every commit moves it by one); DDL also
        // moves `schema_version`, a data commit moves only its tables' `data_version`.
        "ALTER TABLE bowman_catalog_version ADD COLUMN schema_version BIGINT NOT NULL DEFAULT 0",
        "UPDATE bowman_catalog_version SET schema_version = version",
        "ALTER TABLE bowman_tables ADD COLUMN data_version BIGINT NOT NULL DEFAULT 0",
        // One row per table a commit touched (kind `data`), or one `schema` row for DDL, so a
        // node asks what changed since the version it holds and reloads only that.
        "CREATE TABLE bowman_catalog_log (
            version BIGINT NOT NULL,
            kind TEXT NOT NULL,
            database_name TEXT NOT NULL,
            name TEXT NOT NULL,
            committed_at BIGINT NOT NULL,
            PRIMARY KEY (version, kind, database_name, name)
        )",
        // How far a source (a Kafka topic, later) has been read, committed with the data.
        "CREATE TABLE bowman_checkpoints (
            source TEXT NOT NULL,
            source_partition TEXT NOT NULL,
            source_offset BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            PRIMARY KEY (source, source_partition)
        )",
    ],
}, Migration {
    version: 9,
    description: "retention: directories commits retired (deleted after file_retention) and writes in progress",
    statements: &[
        // No foreign key: a row outlives a DROP or RENAME of its table, and the sweeper deletes
        // the directory by its location either way.
        "CREATE TABLE bowman_retired_dirs (
            location TEXT NOT NULL,
            dir TEXT NOT NULL,
            partition_path TEXT NOT NULL,
            database_name TEXT NOT NULL,
            table_name TEXT NOT NULL,
            retired_at BIGINT NOT NULL,
            claimed_until BIGINT NOT NULL DEFAULT 0,
            PRIMARY KEY (location, dir)
        )",
        "CREATE TABLE bowman_write_intents (
            commit_id TEXT PRIMARY KEY,
            database_name TEXT NOT NULL,
            table_name TEXT NOT NULL,
            node TEXT NOT NULL,
            started_at BIGINT NOT NULL,
            lease_until BIGINT NOT NULL
        )",
    ],
}];

pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The table that records which migrations ran.
pub(crate) const SCHEMA_TABLE: &str = "CREATE TABLE IF NOT EXISTS bowman_schema_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)";

#[cfg(test)]
mod tests {
    /// Stores run migrations in list order, each once, above the highest version a catalog
    /// recorded: the list must go up.
    #[test]
    fn migrations_are_in_increasing_order() {
        for pair in super::MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version, "migration {} is listed before {}", pair[0].version, pair[1].version);
        }
    }
}
