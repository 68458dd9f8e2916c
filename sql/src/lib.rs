//! Bowman's SQL layer: the dialect, the planning of Bowman's own statements, and the [`Session`]
//! that runs a statement end to end.
//!
//! Every front end (pgwire, Flight SQL, the job scheduler) runs statements through a [`Session`]
//! created by the shared [`Engine`], so all of them see the same semantics, errors and plans. This
//! crate never speaks a wire protocol: it returns [`Output`] (a stream of Arrow record batches or
//! a command tag) and [`BowmanError`] (with its SQLSTATE).

mod column_names;
mod commit;
mod copy;
mod ddl;
mod engine;
mod exec;
mod field_access;
mod information_schema;
mod ingest;
mod functions;
mod insert;
pub mod limits;
pub mod error;
mod output;
pub mod parser;
mod params;
pub mod pattern;
mod pg_catalog;
pub mod metrics;
mod pg_functions;
mod placeholders;
pub mod plan;
mod privileges;
pub mod registry;
mod resolver;
mod session;
mod settings;
mod spark;
mod sweeper;
mod tracked;
mod transaction;
mod views;
pub mod types;

pub use engine::{CATALOG_NAME, Components, Compose, Engine, EngineConfig};
pub use error::{BowmanError, Result, SqlState};
pub use copy::{CopyFormat, CopyInTarget};
pub use ingest::IngestMode;
pub use output::{Notice, Output};
pub use parser::{Statement, parse_sql};
pub use placeholders::qmark_to_dollar;
pub use privileges::{ConfigRoles, READ_SERVER_FILES, WRITE_SERVER_FILES};
pub use registry::{ClientInfo, Controls, Protocol, QueryRegistry};
pub use session::{Prepared, Session};
pub use settings::{
    BowmanOptions, CountSetting, DurationSetting, PartitionOverwriteMode, SizeSetting, ValueError, parse_duration_ms, reported_name,
    server_defaults,
};

pub use bowman_connector_files::{S3Settings, StoreCallCounts, StoreCalls};
