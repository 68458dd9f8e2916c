//! What this binary links into the engine: the connectors it is built with (cargo features
//! `delta`, `postgres`, `mysql`, `redshift`, `kafka`, `redis`, `cassandra`, all on by default) and the pushdown rule and planner
//! the remote databases share. `bowman-sql` links none of them itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use bowman_connector_files::FilesTableProviderFactory;
use bowman_sql::Components;

/// The engine's components for this build; `cassandra` holds the server's `[cassandra]`
/// connection defaults.
pub fn components(files: &Arc<FilesTableProviderFactory>, cassandra: &BTreeMap<String, String>) -> Components {
    #[allow(unused_mut)] // a build without connectors adds nothing
    let mut out = Components::default();
    #[cfg(feature = "kafka")]
    out.connectors.push(Arc::new(bowman_connector_kafka::KafkaConnector::new()));
    #[cfg(feature = "redis")]
    out.connectors.push(Arc::new(bowman_connector_redis::RedisConnector::new()));
    #[cfg(feature = "cassandra")]
    out.connectors.push(Arc::new(bowman_connector_cassandra::CassandraConnector::new(cassandra.clone())));
    let _ = cassandra;
    #[cfg(feature = "delta")]
    out.connectors.push(Arc::new(bowman_connector_delta::DeltaConnector::new(files.clone())));
    // URL schemes of Spark's generic JDBC source, by the connector that serves each.
    #[cfg(any(feature = "postgres", feature = "mysql", feature = "redshift"))]
    let mut jdbc: Vec<(&'static str, Arc<dyn bowman_connector::Connector>)> = Vec::new();
    #[cfg(feature = "postgres")]
    {
        let pg: Arc<dyn bowman_connector::Connector> = Arc::new(bowman_connector_postgres::PostgresConnector);
        jdbc.extend([("postgresql", pg.clone()), ("postgres", pg.clone())]);
        out.connectors.push(pg);
    }
    #[cfg(feature = "mysql")]
    {
        let mysql: Arc<dyn bowman_connector::Connector> = Arc::new(bowman_connector_mysql::MySqlConnector);
        jdbc.extend([("mysql", mysql.clone()), ("mariadb", mysql.clone())]);
        out.connectors.push(mysql);
    }
    #[cfg(feature = "redshift")]
    {
        let redshift: Arc<dyn bowman_connector::Connector> = Arc::new(bowman_connector_redshift::RedshiftConnector::new(files.clone()));
        jdbc.push(("redshift", redshift.clone()));
        out.connectors.push(redshift);
    }
    #[cfg(any(feature = "postgres", feature = "mysql", feature = "redshift"))]
    {
        out.connectors.push(Arc::new(bowman_connector_remote::JdbcConnector::new(jdbc)));
        // Joins, aggregates and sorts over tables of one remote database run there.
        out.optimizer_rules.push(Arc::new(bowman_connector_remote::RemotePushdown));
        out.planners.push(Arc::new(bowman_connector_remote::RemotePlanner));
    }
    let _ = files;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(feature = "delta", feature = "postgres", feature = "mysql", feature = "redshift", feature = "kafka", feature = "redis", feature = "cassandra"))]
    fn a_default_build_serves_every_using_name() {
        let files = Arc::new(FilesTableProviderFactory::new(Default::default(), Default::default()));
        let c = components(&files, &BTreeMap::new());
        let mut names: Vec<&str> = c.connectors.iter().flat_map(|c| c.names().iter().copied()).collect();
        names.sort();
        for n in ["delta", "postgres", "mysql", "mariadb", "redshift", "jdbc", "org.apache.spark.sql.jdbc", "kafka", "redis", "cassandra", "org.apache.spark.sql.cassandra"] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        assert_eq!(c.optimizer_rules.len(), 1);
        assert_eq!(c.planners.len(), 1);
    }
}
