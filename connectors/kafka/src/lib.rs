//! `USING kafka`.

use std::sync::Arc;

use async_trait::async_trait;
use bowman_connector::{Connector, ConnectorError, ErrorKind, OptionSpec};
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::error::Result;
use datafusion::logical_expr::CreateExternalTable;

/// SCAFFOLD (being written): the Kafka connector.
#[derive(Debug, Default)]
pub struct KafkaConnector ;

impl KafkaConnector {
    pub fn new() -> Self { KafkaConnector }
}

#[async_trait]
impl TableProviderFactory for KafkaConnector {
    async fn create(&self, _state: &dyn Session, cmd: &CreateExternalTable) -> Result<Arc<dyn TableProvider>> {
        Err(ConnectorError::new(ErrorKind::Unsupported, format!("USING kafka is not built yet (table {})", cmd.name)).into())
    }
}

impl Connector for KafkaConnector {
    fn names(&self) -> &'static [&'static str] {
        &["kafka"]
    }

    fn options(&self) -> &'static [OptionSpec] {
        &[]
    }
}
