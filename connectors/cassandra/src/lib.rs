//! `USING cassandra` (alias `org.apache.spark.sql.cassandra`).


use std::sync::Arc;

use async_trait::async_trait;
use bowman_connector::{Connector, ConnectorError, ErrorKind, OptionSpec};
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::error::Result;
use datafusion::logical_expr::CreateExternalTable;

/// SCAFFOLD (being written): the Cassandra connector.
#[derive(Debug, Default)]
pub struct CassandraConnector {
    /// Server-level connection options (`[cassandra]` in bowman.toml, `BOWMAN_CASSANDRA_*`), below
    /// each table's OPTIONS, as Spark's `spark.cassandra.connection.host`.
    pub defaults: std::collections::BTreeMap<String, String>,
}

impl CassandraConnector {
    pub fn new(defaults: std::collections::BTreeMap<String, String>) -> Self { CassandraConnector { defaults } }
}

#[async_trait]
impl TableProviderFactory for CassandraConnector {
    async fn create(&self, _state: &dyn Session, cmd: &CreateExternalTable) -> Result<Arc<dyn TableProvider>> {
        Err(ConnectorError::new(ErrorKind::Unsupported, format!("USING cassandra is not built yet (table {})", cmd.name)).into())
    }
}

impl Connector for CassandraConnector {
    fn names(&self) -> &'static [&'static str] {
        &["cassandra", "org.apache.spark.sql.cassandra"]
    }

    fn options(&self) -> &'static [OptionSpec] {
        &[]
    }
}
