//! `USING jdbc` / `USING org.apache.spark.sql.jdbc`: Spark's generic JDBC source, served by the
//! connector whose URL scheme the table's `url` names (`jdbc:postgresql://`, `jdbc:mysql://`,
//! `jdbc:mariadb://`, `jdbc:redshift://`).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bowman_connector::{Connector, ConnectorError, ErrorKind, OptionSpec};
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::error::Result;
use datafusion::logical_expr::CreateExternalTable;

/// Spark's JDBC source: a table of whichever connector its URL's scheme names.
#[derive(Debug)]
pub struct JdbcConnector {
    routes: Vec<(&'static str, Arc<dyn Connector>)>,
}

impl JdbcConnector {
    /// Route URL schemes (`postgresql`, `mysql`, ...) to the connectors that serve them.
    pub fn new(routes: Vec<(&'static str, Arc<dyn Connector>)>) -> Self {
        JdbcConnector { routes }
    }

    fn route(&self, options: impl IntoIterator<Item = (String, String)>, table: &str) -> Result<Arc<dyn Connector>> {
        let url = options.into_iter().find(|(k, _)| k.eq_ignore_ascii_case("url")).map(|(_, v)| v).unwrap_or_default();
        let scheme = url.strip_prefix("jdbc:").unwrap_or(&url).split("://").next().unwrap_or_default().to_ascii_lowercase();
        self.routes.iter().find(|(s, _)| *s == scheme).map(|(_, c)| c.clone()).ok_or_else(|| {
            let known: Vec<&str> = self.routes.iter().map(|(s, _)| *s).collect();
            ConnectorError::new(
                ErrorKind::InvalidOption,
                format!("table {table}: USING jdbc needs a url of a known database (jdbc:{}://...)", known.join("://, jdbc:")),
            )
            .into()
        })
    }
}

#[async_trait]
impl TableProviderFactory for JdbcConnector {
    async fn create(&self, state: &dyn Session, cmd: &CreateExternalTable) -> Result<Arc<dyn TableProvider>> {
        self.route(cmd.options.clone(), &cmd.name.to_string())?.create(state, cmd).await
    }
}

#[async_trait]
impl Connector for JdbcConnector {
    fn names(&self) -> &'static [&'static str] {
        &["jdbc", "org.apache.spark.sql.jdbc"]
    }

    fn options(&self) -> &'static [OptionSpec] {
        crate::REMOTE_OPTIONS
    }

    fn split_options(&self, options: &BTreeMap<String, String>) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        match self.route(options.clone(), "") {
            Ok(c) => c.split_options(options),
            Err(_) => crate::options::split_options(self.options(), options),
        }
    }

    async fn validate(&self, state: &dyn Session, cmd: &CreateExternalTable) -> Result<()> {
        self.route(cmd.options.clone(), &cmd.name.to_string())?.validate(state, cmd).await
    }
}
