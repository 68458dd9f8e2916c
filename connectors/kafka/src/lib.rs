//! `USING kafka`: a topic as a table.
//!
//! ```sql
//! CREATE TABLE events (user_id BIGINT, action STRING) USING kafka
//!   OPTIONS (bootstrap_servers 'broker:9092', topic 'events');
//! ```
//!
//! A scan reads a snapshot fixed when the query starts (per partition, from the start offset to
//! the end of the log at that moment), split into offset ranges read in parallel, without a
//! consumer group. `INSERT` produces one message per row in one Kafka transaction per statement.
//! See docs/kafka.md.

pub mod decode;
pub mod options;
pub mod pushdown;
pub mod scan;
mod sink;

use std::sync::Arc;

use async_trait::async_trait;
use bowman_connector::{Connector, ConnectorError, ErrorKind, OptionSpec};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{CreateExternalTable, Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;

use crate::decode::Layout;
use crate::options::KafkaOptions;
use crate::scan::KafkaScanExec;

/// The options a kafka table understands (librdkafka properties go with a `kafka.` prefix).
pub static OPTIONS: &[OptionSpec] = &[
    OptionSpec::new("bootstrap_servers", "host:port[,host:port...] of the Kafka brokers"),
    OptionSpec::new("topic", "the topic the table reads and INSERT writes"),
    OptionSpec::new("value_format", "json (default), raw or csv: how a message's value becomes the declared columns"),
    OptionSpec::new("key_format", "string (default), binary or json: the type of _key"),
    OptionSpec::new("starting_offsets", "earliest (default), latest, or {\"topic\":{\"0\":23,\"1\":-2}} (-2 earliest, -1 latest)"),
    OptionSpec::new("ending_offsets", "latest (default: the end of the log when the query starts) or {\"topic\":{\"0\":50,\"1\":-1}}"),
    OptionSpec::new("isolation_level", "read_committed (default) or read_uncommitted"),
    OptionSpec::new("fail_on_data_loss", "true (default): a starting offset below the log start is an error; false starts at the log start"),
    OptionSpec::new("strict", "false (default): a message that does not decode gives NULL columns and _error; true fails the query"),
    OptionSpec::new("key_column", "INSERT: the column whose value is the message key (else _key)"),
    OptionSpec::new("timestamp_slack_ms", "how far CreateTime may run ahead of log order, for _timestamp upper bounds (default 300000)"),
    OptionSpec::new("connect_timeout_ms", "metadata and connection wait before a broker counts as unreachable (default 5000)"),
    OptionSpec::new("read_timeout_ms", "a scan that fetches nothing for this long fails (default 30000)"),
    OptionSpec::secret("kafka.sasl.password", "SASL password"),
    OptionSpec::secret("kafka.sasl.oauthbearer.client.secret", "OAUTHBEARER client secret"),
    OptionSpec::secret("kafka.sasl.oauthbearer.config", "OAUTHBEARER configuration (may hold secrets)"),
    OptionSpec::secret("kafka.ssl.key.password", "password of the TLS client key"),
    OptionSpec::secret("kafka.ssl.key.pem", "TLS client key (PEM)"),
    OptionSpec::secret("kafka.ssl.keystore.password", "password of the TLS keystore"),
    OptionSpec::secret("kafka.ssl.truststore.password", "password of the TLS truststore"),
    OptionSpec::new("kafka.*", "any other librdkafka property, e.g. kafka.security.protocol 'SASL_SSL', kafka.sasl.mechanism 'PLAIN', kafka.sasl.username"),
];

/// The Kafka connector.
#[derive(Debug, Default)]
pub struct KafkaConnector;

impl KafkaConnector {
    pub fn new() -> Self {
        KafkaConnector
    }
}

/// librdkafka settings common to consumers and producers: brokers, timeouts, `kafka.*`.
pub(crate) fn client_config(o: &KafkaOptions) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &o.bootstrap_servers);
    let ms = o.connect_timeout.as_millis().to_string();
    c.set("socket.connection.setup.timeout.ms", &ms);
    c.set("socket.timeout.ms", (o.connect_timeout.as_millis().max(10) * 2).to_string());
    c.set("client.id", "bowman");
    // librdkafka logs every failed connection attempt; errors reach the user through results.
    c.set("log.connection.close", "false");
    for (k, v) in &o.client {
        c.set(k, v);
    }
    c
}

/// A librdkafka configuration error as 22023, without the value (it may be a secret).
pub(crate) fn config_error(o: &KafkaOptions, table: &str, e: &KafkaError) -> ConnectorError {
    let msg = match e {
        KafkaError::ClientConfig(_, desc, key, _) => {
            format!("kafka table {table}: librdkafka refuses option 'kafka.{key}': {desc}")
        }
        e => format!("kafka table {table}: cannot create a Kafka client: {e}"),
    };
    ConnectorError::new(ErrorKind::InvalidOption, o.redact(&msg))
}

fn open(cmd: &CreateExternalTable) -> Result<KafkaTable> {
    let table = cmd.name.to_string();
    let options: std::collections::HashMap<String, String> = cmd.options.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let o = KafkaOptions::parse(&options)?;
    let layout = Layout::new(cmd.schema.as_arrow(), o.value_format, o.key_format, &table)?;
    if let Some(k) = &o.key_column {
        let ok = layout.value_fields().iter().any(|(_, f)| f.name() == k);
        if !ok {
            return Err(ConnectorError::new(
                ErrorKind::InvalidOption,
                format!("key_column '{}' is not a declared column of kafka table {table}", options::excerpt(k)),
            )
            .into());
        }
    }
    Ok(KafkaTable { name: table, options: Arc::new(o), layout: Arc::new(layout) })
}

#[async_trait]
impl TableProviderFactory for KafkaConnector {
    async fn create(&self, _state: &dyn Session, cmd: &CreateExternalTable) -> Result<Arc<dyn TableProvider>> {
        Ok(Arc::new(open(cmd)?))
    }
}

#[async_trait]
impl Connector for KafkaConnector {
    fn names(&self) -> &'static [&'static str] {
        &["kafka"]
    }

    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }

    /// The options parse, librdkafka accepts the `kafka.*` properties, and the topic exists.
    async fn validate(&self, _state: &dyn Session, cmd: &CreateExternalTable) -> Result<()> {
        let t = open(cmd)?;
        let o = t.options.clone();
        let name = t.name.clone();
        tokio::task::spawn_blocking(move || -> Result<(), ConnectorError> {
            let c = scan::consumer(&o, &name)?;
            scan::topic_partitions(&c, &o, &name)?;
            Ok(())
        })
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))??;
        Ok(())
    }
}

/// Whether the topic's `message.timestamp.type` is LogAppendTime (timestamps then grow with the
/// offset); false when the broker does not say.
async fn log_append_time(o: &KafkaOptions) -> bool {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    let Ok(admin) = client_config(o).create::<AdminClient<rdkafka::client::DefaultClientContext>>() else { return false };
    let opts = AdminOptions::new().request_timeout(Some(o.connect_timeout));
    let Ok(Ok(res)) = tokio::time::timeout(o.connect_timeout, admin.describe_configs(&[ResourceSpecifier::Topic(&o.topic)], &opts)).await else {
        return false;
    };
    res.first()
        .and_then(|r| r.as_ref().ok())
        .and_then(|r| r.get("message.timestamp.type").and_then(|e| e.value.clone()))
        .is_some_and(|v| v.eq_ignore_ascii_case("LogAppendTime"))
}

/// A Kafka topic with the table's columns.
#[derive(Debug)]
pub struct KafkaTable {
    name: String,
    options: Arc<KafkaOptions>,
    layout: Arc<Layout>,
}

#[async_trait]
impl TableProvider for KafkaTable {
    fn schema(&self) -> SchemaRef {
        self.layout.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters.iter().map(|f| pushdown::classify(f, &self.layout)).collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.layout.schema.fields().len()).collect(),
        };
        let bounds = pushdown::bounds(filters, &self.layout);
        // An upper bound on _timestamp needs no slack when the broker stamps the messages.
        let log_append_time = bounds.ts_hi.is_some() && log_append_time(&self.options).await;
        let (o, name) = (self.options.clone(), self.name.clone());
        let ranges = tokio::task::spawn_blocking(move || scan::snapshot(&o, &name, &bounds, log_append_time))
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))??;
        let readers = scan::split(&ranges, state.config().target_partitions());
        Ok(Arc::new(KafkaScanExec::new(
            self.options.clone(),
            self.layout.clone(),
            self.name.clone(),
            projection,
            readers,
            limit,
            false,
        )))
    }

    async fn insert_into(&self, _state: &dyn Session, input: Arc<dyn ExecutionPlan>, insert_op: InsertOp) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(ConnectorError::new(
                ErrorKind::Unsupported,
                format!("INSERT OVERWRITE into the kafka table {}: a topic is append-only; use INSERT INTO", self.name),
            )
            .into());
        }
        let sink = sink::KafkaSink::new(self.name.clone(), self.options.clone(), self.layout.clone());
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

#[cfg(test)]
mod mock_tests;
