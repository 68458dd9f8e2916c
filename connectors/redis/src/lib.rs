//! `USING redis`.

use std::sync::Arc;

use async_trait::async_trait;
use bowman_connector::{Connector, ConnectorError, ErrorKind, OptionSpec};
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::error::Result;
use datafusion::logical_expr::CreateExternalTable;

/// SCAFFOLD (being written): the Redis connector.
#[derive(Debug, Default)]
pub struct RedisConnector ;

impl RedisConnector {
    pub fn new() -> Self { RedisConnector }
}

#[async_trait]
impl TableProviderFactory for RedisConnector {
    async fn create(&self, _state: &dyn Session, cmd: &CreateExternalTable) -> Result<Arc<dyn TableProvider>> {
        Err(ConnectorError::new(ErrorKind::Unsupported, format!("USING redis is not built yet (table {})", cmd.name)).into())
    }
}

impl Connector for RedisConnector {
    fn names(&self) -> &'static [&'static str] {
        &["redis"]
    }

    fn options(&self) -> &'static [OptionSpec] {
        &[]
    }
}
