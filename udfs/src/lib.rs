//! Functions Bowman adds to DataFusion's library.
//!
//! * [`geodata`] — `geodata(longitude, latitude)`, reverse geocoding over polygon and point
//!   layers loaded from data (`CREATE FUNCTION ... USING geodata`, see the `sql` crate).
//! * [`pg`] — the PostgreSQL session functions that clients call on connect (`version()`,
//!   `current_database()`, `current_schema()`), answering with Bowman's own state.
//!
//! To add a Rust UDF: implement DataFusion's `ScalarUDFImpl` (or `AggregateUDFImpl`) in a module
//! here and list it in [`all_scalar_functions`]; every session of every front end gets it.

pub mod geodata;
pub mod pg;

use std::sync::Arc;

use datafusion::logical_expr::ScalarUDF;

/// Every scalar function Bowman registers in each session.
pub fn all_scalar_functions() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::from(pg::VersionFunc::new())),
        Arc::new(ScalarUDF::from(pg::CurrentDatabaseFunc::new())),
        Arc::new(ScalarUDF::from(pg::CurrentSchemaFunc::new())),
    ]
}
