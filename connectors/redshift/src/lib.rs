//! `USING redshift` (alias `com.databricks.spark.redshift`, the name the original platform's
//! tables were created with): Redshift tables.
//!
//! Redshift speaks PostgreSQL's wire protocol, so small reads, pushed-down joins and INSERTs go
//! through [`PgDatabase`]. With `tempdir 's3://bucket/prefix'`, reads instead run
//! `UNLOAD ('<query>') TO '<tempdir>/<unique id>/' ... FORMAT AS PARQUET` and then read those
//! Parquet files from S3 (and delete them), which is how large Redshift reads stay fast: the
//! cluster writes in parallel and no row crosses the leader node's cursor.
//!
//! ```sql
//! CREATE TABLE dw.sales USING com.databricks.spark.redshift
//!   OPTIONS (url 'jdbc:redshift://cluster:5439/dw', dbtable 'public.sales', user 'bowman',
//!            password '${env:REDSHIFT_PASSWORD}', tempdir 's3://scratch/redshift',
//!            aws_iam_role 'arn:aws:iam::123456789012:role/unload');
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use bowman_connector::{Connector, ConnectorError, ErrorKind, OptionSpec};
use bowman_connector_files::FilesTableProviderFactory;
use bowman_connector_postgres::{Flavor, PgDatabase};
use bowman_connector_remote::options::{self, RemoteOptions};
use bowman_connector_remote::table::open_table;
use bowman_connector_remote::{RemoteDatabase, redact};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::common::TableReference;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::CreateExternalTable;
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::sql::unparser::dialect::Dialect;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt};
use object_store::path::Path;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
// parquet 59 deprecates ParquetObjectReader in favour of hand-written AsyncFileReaders; it still
// does exactly what reading a few UNLOAD files needs.
#[allow(deprecated)]
use parquet::arrow::async_reader::ParquetObjectReader;

const REDSHIFT_ONLY: &[OptionSpec] = &[
    OptionSpec::new("tempdir", "s3:// prefix where UNLOAD writes Parquet for large reads"),
    OptionSpec::new("aws_iam_role", "IAM role Redshift assumes to write to tempdir"),
    OptionSpec::secret("temporary_aws_access_key_id", "access key Redshift uses to write to tempdir"),
    OptionSpec::secret("temporary_aws_secret_access_key", "secret key Redshift uses to write to tempdir"),
    OptionSpec::secret("temporary_aws_session_token", "session token Redshift uses to write to tempdir"),
    OptionSpec::new(
        "forward_spark_s3_credentials",
        "true: Redshift writes to tempdir with Bowman's own S3 credentials (table options, server [s3] settings, AWS_* environment)",
    ),
];

/// How Redshift authenticates to S3 for UNLOAD.
#[derive(Clone)]
pub enum UnloadAuth {
    IamRole(String),
    Keys { access_key_id: String, secret_access_key: String, session_token: Option<String> },
}

fn lit(s: &str) -> String {
    // Redshift string literals treat backslash as an escape character as well as doubling quotes.
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The UNLOAD statement that writes `query`'s result as Parquet under `target` (ending in `/`).
pub fn unload_statement(query: &str, target: &str, auth: &UnloadAuth) -> String {
    let auth = match auth {
        UnloadAuth::IamRole(role) => format!("IAM_ROLE {}", lit(role)),
        UnloadAuth::Keys { access_key_id, secret_access_key, session_token } => {
            let mut s = format!("ACCESS_KEY_ID {} SECRET_ACCESS_KEY {}", lit(access_key_id), lit(secret_access_key));
            if let Some(t) = session_token {
                s.push_str(&format!(" SESSION_TOKEN {}", lit(t)));
            }
            s
        }
    };
    format!("UNLOAD ({}) TO {} {auth} FORMAT AS PARQUET", lit(query), lit(target))
}

/// How the UNLOAD's credentials are found: given in the options, or Bowman's own S3
/// credentials asked for at each UNLOAD (`forward_spark_s3_credentials`), so temporary
/// credentials are current.
#[derive(Clone)]
enum UnloadCredentials {
    Given(UnloadAuth),
    Forwarded(object_store::aws::AwsCredentialProvider),
}

impl UnloadCredentials {
    /// The credentials for one UNLOAD, and the secrets among them to scrub from messages.
    async fn resolve(&self, tempdir: &str, table: &str) -> Result<(UnloadAuth, Vec<String>)> {
        match self {
            UnloadCredentials::Given(auth) => Ok((auth.clone(), Vec::new())),
            UnloadCredentials::Forwarded(provider) => {
                let c = provider.get_credential().await.map_err(|e| {
                    // object_store's message names the source that failed, never a key.
                    DataFusionError::External(Box::new(ConnectorError::new(
                        ErrorKind::AccessDenied,
                        format!(
                            "table {table}: forward_spark_s3_credentials found no S3 credentials for {tempdir} ({e}); \
                             set the server's [s3] access_key_id and secret_access_key, BOWMAN_S3_* or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
                        ),
                    )))
                })?;
                let mut secrets = vec![c.secret_key.clone()];
                secrets.extend(c.token.clone());
                Ok((
                    UnloadAuth::Keys { access_key_id: c.key_id.clone(), secret_access_key: c.secret_key.clone(), session_token: c.token.clone() },
                    secrets,
                ))
            }
        }
    }
}

/// Where and how large reads are unloaded.
#[derive(Clone)]
struct Unload {
    /// `s3://bucket/prefix`, without a trailing slash.
    tempdir: String,
    store: Arc<dyn ObjectStore>,
    credentials: UnloadCredentials,
}

impl std::fmt::Debug for Unload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Unload({})", self.tempdir)
    }
}

/// A Redshift database: the PostgreSQL wire path plus, with a tempdir, UNLOAD for reads.
#[derive(Debug)]
pub struct RedshiftDatabase {
    pg: Arc<PgDatabase>,
    unload: Option<Unload>,
    secrets: Vec<String>,
}

impl RedshiftDatabase {
    /// Run the UNLOAD for one query and stream the files it wrote.
    fn unloaded(&self, sql: String, schema: SchemaRef, table: String, unload: Unload) -> SendableRecordBatchStream {
        let pg = self.pg.clone();
        let mut secrets = self.secrets.clone();
        let mut builder = RecordBatchReceiverStream::builder(schema.clone(), 2);
        let tx = builder.tx();
        builder.spawn(async move {
            let id = uuid::Uuid::new_v4();
            let target = format!("{}/{id}/", unload.tempdir);
            let (auth, forwarded) = unload.credentials.resolve(&unload.tempdir, &table).await?;
            secrets.extend(forwarded);
            let statement = unload_statement(&sql, &target, &auth);
            let client = pg.connect(&table).await?;
            // The statement carries credentials: it is never logged, and errors are scrubbed.
            tracing::debug!(%target, "redshift unload");
            client.batch_execute(&statement).await.map_err(|e| match pg.error(e, &table, false) {
                // The remote's SQLSTATE is kept; the message is scrubbed of every credential.
                DataFusionError::External(inner) => match inner.downcast::<ConnectorError>() {
                    Ok(ce) => DataFusionError::External(Box::new(ConnectorError { message: redact(&ce.message, &secrets), ..*ce })),
                    Err(other) => DataFusionError::Execution(redact(&other.to_string(), &secrets)),
                },
                other => DataFusionError::Execution(redact(&other.to_string(), &secrets)),
            })?;
            drop(client);
            let prefix = s3_prefix(&target)?;
            let mut files = read_unloaded(unload.store.clone(), prefix, schema, table);
            while let Some(batch) = files.next().await {
                if tx.send(batch).await.is_err() {
                    break;
                }
            }
            Ok(())
        });
        builder.build()
    }
}

/// The object-store path of an `s3://bucket/prefix/` URL.
fn s3_prefix(url: &str) -> Result<Path> {
    let rest = url
        .strip_prefix("s3://")
        .or_else(|| url.strip_prefix("s3a://"))
        .ok_or_else(|| DataFusionError::Plan(format!("tempdir '{url}' must be an s3:// URL")))?;
    let (_, key) = rest.split_once('/').unwrap_or((rest, ""));
    Ok(Path::from(key.trim_end_matches('/')))
}

/// Read every Parquet file UNLOAD wrote under `prefix` (in name order), cast each batch to
/// `schema` by position (UNLOAD names columns after the query's expressions), and delete the
/// files once read, or when reading fails.
pub fn read_unloaded(store: Arc<dyn ObjectStore>, prefix: Path, schema: SchemaRef, table: String) -> SendableRecordBatchStream {
    let mut builder = RecordBatchReceiverStream::builder(schema.clone(), 2);
    let tx = builder.tx();
    builder.spawn(async move {
        let mut objects: Vec<object_store::ObjectMeta> = store.list(Some(&prefix)).try_collect().await?;
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        let result: Result<()> = async {
            for meta in &objects {
                if meta.size == 0 {
                    continue;
                }
                #[allow(deprecated)]
                let reader = ParquetObjectReader::new(store.clone(), meta.location.clone()).with_file_size(meta.size);
                let mut batches = ParquetRecordBatchStreamBuilder::new(reader).await?.build()?;
                while let Some(batch) = batches.try_next().await? {
                    if batch.num_columns() != schema.fields().len() {
                        return Err(DataFusionError::Execution(format!(
                            "UNLOAD for {table} wrote {} columns where {} were expected",
                            batch.num_columns(),
                            schema.fields().len()
                        )));
                    }
                    let columns = batch
                        .columns()
                        .iter()
                        .zip(schema.fields())
                        .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c.clone()) } else { cast(c, f.data_type()) })
                        .collect::<std::result::Result<Vec<_>, _>>()?;
                    if tx.send(Ok(RecordBatch::try_new(schema.clone(), columns)?)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            Ok(())
        }
        .await;
        for meta in &objects {
            if let Err(e) = store.delete(&meta.location).await {
                tracing::warn!(path = %meta.location, error = %e, "could not delete an UNLOAD file");
            }
        }
        result
    });
    builder.build()
}

#[async_trait]
impl RemoteDatabase for RedshiftDatabase {
    fn kind(&self) -> &'static str {
        "redshift"
    }

    fn describe(&self) -> String {
        match &self.unload {
            Some(u) => format!("{} unload={}", self.pg.describe(), u.tempdir),
            None => self.pg.describe(),
        }
    }

    fn identity(&self) -> String {
        self.pg.identity()
    }

    fn dialect(&self) -> Arc<dyn Dialect> {
        self.pg.dialect()
    }

    fn table_reference(&self, dbtable: &str) -> TableReference {
        self.pg.table_reference(dbtable)
    }

    fn supports_function(&self, name: &str) -> bool {
        self.pg.supports_function(name)
    }

    fn string_literal_pushable(&self, value: &str) -> bool {
        // The unparser writes PostgreSQL literals, where a backslash is a character; Redshift
        // reads it as an escape. Such filters are evaluated by Bowman instead.
        !value.contains('\\')
    }

    fn query(&self, sql: String, schema: SchemaRef, table: String) -> Result<SendableRecordBatchStream> {
        match &self.unload {
            Some(u) => Ok(self.unloaded(sql, schema, table, u.clone())),
            None => self.pg.query(sql, schema, table),
        }
    }

    async fn insert(&self, table: &TableReference, data: SendableRecordBatchStream, display: &str) -> Result<u64> {
        self.pg.insert(table, data, display).await
    }
}

/// The `redshift` connector.
#[derive(Debug)]
pub struct RedshiftConnector {
    files: Arc<FilesTableProviderFactory>,
}

impl RedshiftConnector {
    /// `files` reaches S3 the way file tables do (table options, then server settings).
    pub fn new(files: Arc<FilesTableProviderFactory>) -> Self {
        RedshiftConnector { files }
    }

    async fn open(&self, state: &dyn Session, cmd: &CreateExternalTable) -> Result<(Arc<RedshiftDatabase>, RemoteOptions)> {
        let name = cmd.name.to_string();
        let lower: HashMap<String, String> = cmd.options.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
        let mut remote_opts = lower.clone();
        for spec in REDSHIFT_ONLY {
            remote_opts.remove(spec.name);
        }
        remote_opts.retain(|k, _| options::REMOTE_OPTIONS.iter().any(|s| s.name == k));
        let o = RemoteOptions::parse(&remote_opts, &name)?;
        let pg = PgDatabase::open(&o, Flavor::Redshift, &name)?;
        let mut secrets = o.secrets();
        let unload = match lower.get("tempdir") {
            None => None,
            Some(tempdir) => {
                let resolve = |k: &str| -> Result<Option<String>> {
                    lower.get(k).map(|v| bowman_connector::resolve_env_refs(k, v)).transpose().map_err(Into::into)
                };
                let forward = match resolve("forward_spark_s3_credentials")? {
                    None => false,
                    Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(ConnectorError::new(
                                ErrorKind::InvalidOption,
                                format!("table {name}: forward_spark_s3_credentials must be 'true' or 'false', not '{v}'"),
                            )
                            .into());
                        }
                    },
                };
                // Hadoop's s3a:// and s3n:// name the same objects; UNLOAD only takes s3://.
                let tempdir = match tempdir.split_once("://") {
                    Some(("s3a" | "s3n", rest)) => format!("s3://{rest}"),
                    _ => tempdir.clone(),
                };
                let tempdir = tempdir.trim_end_matches('/').to_string();
                let s3_options: BTreeMap<String, String> =
                    lower.iter().filter(|(k, _)| !REDSHIFT_ONLY.iter().any(|s| s.name == *k)).map(|(k, v)| (k.clone(), v.clone())).collect();
                let credentials = match (resolve("aws_iam_role")?, resolve("temporary_aws_access_key_id")?, resolve("temporary_aws_secret_access_key")?) {
                    (Some(_), _, _) | (_, Some(_), Some(_)) if forward => {
                        return Err(ConnectorError::new(
                            ErrorKind::InvalidOption,
                            format!("table {name}: give forward_spark_s3_credentials, aws_iam_role or temporary_aws_* keys, only one of them"),
                        )
                        .into());
                    }
                    _ if forward => UnloadCredentials::Forwarded(self.files.s3_credential_provider(&tempdir, &s3_options)?),
                    (Some(role), _, _) => UnloadCredentials::Given(UnloadAuth::IamRole(role)),
                    (None, Some(id), Some(secret)) => {
                        let token = resolve("temporary_aws_session_token")?;
                        secrets.push(secret.clone());
                        secrets.extend(token.clone());
                        UnloadCredentials::Given(UnloadAuth::Keys { access_key_id: id, secret_access_key: secret, session_token: token })
                    }
                    _ => {
                        return Err(ConnectorError::new(
                            ErrorKind::InvalidOption,
                            format!(
                                "table {name}: tempdir needs aws_iam_role, temporary_aws_access_key_id and temporary_aws_secret_access_key, \
                                 or forward_spark_s3_credentials 'true', for Redshift to write there"
                            ),
                        )
                        .into());
                    }
                };
                let url = self.files.prepare_location(state, &format!("{tempdir}/"), &s3_options)?;
                let store = state.runtime_env().object_store(&url)?;
                Some(Unload { tempdir, store, credentials })
            }
        };
        Ok((Arc::new(RedshiftDatabase { pg, unload, secrets }), o))
    }
}

#[async_trait]
impl TableProviderFactory for RedshiftConnector {
    async fn create(&self, state: &dyn Session, cmd: &CreateExternalTable) -> Result<Arc<dyn TableProvider>> {
        let (db, o) = self.open(state, cmd).await?;
        let name = cmd.name.to_string();
        let discover = db.pg.discover(&o.source, &name);
        open_table(cmd, db.clone(), o.clone(), discover).await
    }
}

#[async_trait]
impl Connector for RedshiftConnector {
    fn names(&self) -> &'static [&'static str] {
        &["redshift", "com.databricks.spark.redshift", "io.github.spark_redshift_community.spark.redshift"]
    }

    fn options(&self) -> &'static [OptionSpec] {
        static ALL: LazyLock<&'static [OptionSpec]> = LazyLock::new(|| {
            let mut all: Vec<OptionSpec> = options::REMOTE_OPTIONS.to_vec();
            all.extend_from_slice(REDSHIFT_ONLY);
            bowman_connector_files::with_s3_options(Vec::leak(all))
        });
        *ALL
    }

    fn split_options(&self, options: &BTreeMap<String, String>) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        options::split_options(self.options(), options)
    }

    async fn validate(&self, state: &dyn Session, cmd: &CreateExternalTable) -> Result<()> {
        let (db, o) = self.open(state, cmd).await?;
        db.pg.discover(&o.source, &cmd.name.to_string()).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unload_statements_quote_the_query_and_credentials() {
        let s = unload_statement(
            "SELECT \"a\" FROM \"public\".\"t\" WHERE (\"b\" = 'it''s')",
            "s3://scratch/rs/0000/",
            &UnloadAuth::IamRole("arn:aws:iam::1:role/r".into()),
        );
        assert_eq!(
            s,
            "UNLOAD ('SELECT \"a\" FROM \"public\".\"t\" WHERE (\"b\" = ''it''''s'')') TO 's3://scratch/rs/0000/' IAM_ROLE 'arn:aws:iam::1:role/r' FORMAT AS PARQUET"
        );
        let k = unload_statement(
            "SELECT 1",
            "s3://b/p/",
            &UnloadAuth::Keys { access_key_id: "AK".into(), secret_access_key: "s'\\x".into(), session_token: None },
        );
        assert!(k.ends_with("ACCESS_KEY_ID 'AK' SECRET_ACCESS_KEY 's''\\\\x' FORMAT AS PARQUET"), "{k}");
        assert_eq!(s3_prefix("s3://bucket/a/b/").unwrap(), Path::from("a/b"));
    }

    #[tokio::test]
    async fn forwarded_credentials_become_the_unload_keys_and_secrets() {
        use object_store::aws::AwsCredential;
        let provider: object_store::aws::AwsCredentialProvider = Arc::new(object_store::StaticCredentialProvider::new(AwsCredential {
            key_id: "AKIDFWD".into(),
            secret_key: "fwd-secret".into(),
            token: Some("fwd-token".into()),
        }));
        let (auth, secrets) = UnloadCredentials::Forwarded(provider).resolve("s3://b/p", "dw.t").await.unwrap();
        let statement = unload_statement("SELECT 1", "s3://b/p/x/", &auth);
        assert!(
            statement.ends_with("ACCESS_KEY_ID 'AKIDFWD' SECRET_ACCESS_KEY 'fwd-secret' SESSION_TOKEN 'fwd-token' FORMAT AS PARQUET"),
            "{statement}"
        );
        assert_eq!(secrets, vec!["fwd-secret".to_string(), "fwd-token".to_string()]);
    }
}
