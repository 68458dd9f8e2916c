//! Functions Bowman adds to DataFusion's library.
//!
//! * [`geodata`] — `geodata(longitude, latitude)`, reverse geocoding over polygon and point
//!   layers loaded from data (`CREATE FUNCTION ... USING geodata`, see the `sql` crate).
//! * [`spark`] — Spark SQL functions the batch SQL uses (`from_unixtime`, `unix_timestamp`,
//!   `to_date`, `date_format`, `get_json_object`, `date_add`, `datediff`, `size`,
//!   `collect_list`, `collect_set`), with Spark's semantics; [`from_json`] — Spark's
//!   `from_json` for flat schemas (registered by the `sql` crate, which owns the type grammar).
//! * [`pg`] — the PostgreSQL session functions that clients call on connect (`version()`,
//!   `current_database()`, `current_schema()`), answering with Bowman's own state.
//!
//! To add a Rust UDF: implement DataFusion's `ScalarUDFImpl` (or `AggregateUDFImpl`) in a module
//! here and list it in [`all_scalar_functions`]; every session of every front end gets it.

pub mod from_json;
pub mod geodata;
pub mod pg;
pub mod spark;

use std::sync::Arc;

use datafusion::logical_expr::{AggregateUDF, ScalarUDF};

/// Every scalar function Bowman registers in each session.
pub fn all_scalar_functions() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::from(pg::VersionFunc::new())),
        Arc::new(ScalarUDF::from(pg::CurrentDatabaseFunc::new())),
        Arc::new(ScalarUDF::from(pg::CurrentSchemaFunc::new())),
    ]
    .into_iter()
    .chain(spark::scalar_functions())
    .collect()
}

/// Every aggregate function Bowman adds (Spark's `collect_list`, `collect_set`).
pub fn all_aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    spark::aggregate_functions()
}
