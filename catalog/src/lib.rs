//! Bowman's persistent catalog.
//!
//! The catalog records databases and tables (and, later, functions, jobs and users) in a versioned
//! store behind one trait, [`CatalogStore`], with two implementations:
//!
//! * [`SqliteStore`] — the embedded default, one file in the data directory;
//! * [`PostgresStore`] — a shared PostgreSQL database, so several Bowman nodes see one catalog.
//!
//! Every change is one [`CatalogChange`] applied in a single store transaction: DDL is all-or-nothing,
//! whatever moment the process dies. [`Catalog`] keeps an in-memory [`CatalogState`] snapshot of the
//! store and refreshes it when the store's version moves, which is what DataFusion's synchronous
//! catalog traits ([`provider::BowmanCatalogProvider`]) read from.
//!
//! The catalog knows nothing about connectors: turning a [`TableDef`] into a DataFusion table is the
//! job of a [`provider::TableResolver`] supplied by the `sql` crate.

mod error;
mod model;
mod migrations;
mod postgres;
pub mod retention;
pub mod provider;
pub mod secrets;
mod sqlite;
mod store;

pub use error::{CatalogError, Result};
pub use model::{CatalogState, Checkpoint, ColumnDef, DatabaseDef, DatabaseEntry, FunctionDef, Grant, GrantObject, LiveDir, PUBLIC_ROLE, RetiredFile, RoleDef, TableDef, TableKind, ViewDef};
pub use postgres::PostgresStore;
pub use retention::{RetiredClaim, RetiredDir, WriteIntent};
pub use secrets::SecretKeys;
pub use sqlite::SqliteStore;
pub use store::{
    Catalog, CatalogChange, CatalogStore, ChangeOutcome, Changes, Committed, DEFAULT_DATABASE, Expect, Mutation, PUBLIC_SCHEMA, Replace, TableKey,
    Transaction, canonical_database, open_store, table_reloads_total,
};
