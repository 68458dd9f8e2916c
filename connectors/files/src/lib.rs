//! Tables over files: Parquet, JSON lines and CSV, on local disk (`file://`) or S3 (`s3://`).
//!
//! [`FilesTableProviderFactory`] is the connector behind `USING parquet|json|csv` (and the Hive
//! form `STORED AS ...`). Tables are DataFusion `ListingTable`s, so Hive-style partition
//! directories (`dt=2018-03-05/`) are pruned by `WHERE` and `INSERT` appends new uniquely named
//! files, partitioned tables included. S3 buckets get an `object_store` client built from the
//! table's options, then Bowman's server-wide S3 settings, then the standard `AWS_*` environment.

mod counting;
mod errors;
mod format;
mod deadline;
mod s3;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bowman_connector::{Connector, OptionSpec};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::Result;
use datafusion::logical_expr::CreateExternalTable;

pub use counting::{CountingStore, StoreCallCounts, StoreCalls};
pub use errors::FilesError;
pub use format::FileFormatKind;
pub use s3::S3Settings;

/// Options that configure a table's S3 client (shared by every connector that keeps files).
pub const S3_OPTIONS: &[OptionSpec] = &[
    OptionSpec::new("endpoint", "S3: endpoint URL, e.g. http://127.0.0.1:8333"),
    OptionSpec::new("region", "S3: region"),
    OptionSpec::new("access_key_id", "S3: access key id"),
    OptionSpec::new("aws_access_key_id", "S3: access key id"),
    OptionSpec::secret("secret_access_key", "S3: secret access key"),
    OptionSpec::secret("aws_secret_access_key", "S3: secret access key"),
    OptionSpec::secret("session_token", "S3: session token"),
    OptionSpec::secret("aws_session_token", "S3: session token"),
    OptionSpec::new("allow_http", "S3: allow plain-HTTP endpoints (true/false)"),
    OptionSpec::new("connect_timeout", "S3: time to wait for a connection (default 5s)"),
    OptionSpec::new("timeout", "S3: time a whole request may take, body included (default 120s)"),
    OptionSpec::new("read_timeout", "S3: time to wait for any answer or the next part of one before the connection counts as lost, 08006 (default 5s)"),
];

/// Options of the file formats themselves (see [`format`]).
const FORMAT_OPTIONS: &[OptionSpec] = &[
    OptionSpec::new("header", "CSV: whether the first line holds column names (default false, as in Spark)"),
    OptionSpec::new("delimiter", "CSV: field separator, one character (alias: sep)"),
    OptionSpec::new("sep", "CSV: field separator, one character"),
    OptionSpec::new("quote", "CSV: quote character"),
    OptionSpec::new("escape", "CSV: escape character"),
    OptionSpec::new("compression", "gzip, bzip2, xz, zstd or uncompressed (CSV/JSON); snappy, zstd, ... (Parquet)"),
    OptionSpec::new("file_extension", "only files ending with this are read (default: .parquet, .json, .csv)"),
    OptionSpec::new("target_file_size", "about how large each file a write makes may grow before the next starts (128MB; default: the session's target_file_size)"),
    OptionSpec::new("max_records_per_file", "the most rows in one file a write makes (default: the session's max_records_per_file)"),
];

/// `extra` followed by [`S3_OPTIONS`], built once: the option schema of a connector that keeps
/// its files on local disk or S3.
pub fn with_s3_options(extra: &'static [OptionSpec]) -> &'static [OptionSpec] {
    Box::leak(extra.iter().chain(S3_OPTIONS).copied().collect::<Vec<_>>().into_boxed_slice())
}

/// The options every file table accepts.
pub fn options() -> &'static [OptionSpec] {
    static ALL: std::sync::LazyLock<&'static [OptionSpec]> = std::sync::LazyLock::new(|| with_s3_options(FORMAT_OPTIONS));
    *ALL
}

/// The connector for file tables.
#[derive(Debug)]
pub struct FilesTableProviderFactory {
    s3: s3::S3Stores,
}

impl FilesTableProviderFactory {
    /// `calls` counts every call made to the S3 stores this connector creates.
    pub fn new(s3_defaults: S3Settings, calls: Arc<StoreCalls>) -> Self {
        FilesTableProviderFactory { s3: s3::S3Stores::new(s3_defaults, calls) }
    }

    fn listing_parts(
        &self,
        state: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> Result<(ListingTableUrl, ListingOptions, BTreeMap<String, String>)> {
        let options: BTreeMap<String, String> =
            cmd.options.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
        let kind = FileFormatKind::from_name(&cmd.file_type)
            .ok_or_else(|| FilesError::UnknownFormat(cmd.file_type.clone()))?;
        let location = cmd.locations.first().ok_or(FilesError::MissingLocation)?;
        let url = table_url(location)?;
        if url.scheme() == "s3" {
            self.s3.register(state, &url, &options)?;
        }
        let listing = format::listing_options(kind, &options)?;
        Ok((url, listing, options))
    }
}

impl FilesTableProviderFactory {
    /// Parse `location` and make sure the session's runtime has a client for it (an S3 bucket's
    /// client is built from `options`, then the server's S3 settings, then `AWS_*`). Other
    /// connectors that keep files (Delta) use this so every table reaches S3 the same way.
    pub fn prepare_location(
        &self,
        state: &dyn Session,
        location: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<ListingTableUrl> {
        let url = table_url(location)?;
        if url.scheme() == "s3" {
            self.s3.register(state, &url, options)?;
        }
        Ok(url)
    }

    /// Check that a prepared location answers, as Spark takes a LOCATION: a local file or
    /// directory, or a directory still to be made under an existing one (the first write
    /// creates it); on S3, that the bucket can be listed with the table's credentials (a prefix
    /// needs no objects yet).
    pub async fn check_location(&self, state: &dyn Session, url: &ListingTableUrl) -> Result<()> {
        if url.scheme() == "file" {
            let path = url::Url::parse(url.as_str())
                .ok()
                .and_then(|u| u.to_file_path().ok())
                .ok_or_else(|| FilesError::InvalidLocation(url.to_string(), "not a local path".into()))?;
            return match std::fs::metadata(&path) {
                Ok(_) => Ok(()),
                Err(_) => match path.parent() {
                    Some(parent) if parent.is_dir() => Ok(()),
                    _ => Err(FilesError::LocationNotFound(url.to_string()).into()),
                },
            };
        }
        let store = state.runtime_env().object_store(url)?;
        s3::check_reachable(store.as_ref(), url).await
    }
}

/// Whether a location names one file rather than a directory, as Spark decides for a path:
/// a local path that is a file, or an S3 key whose last part ends in a data file's extension
/// (`s3://bucket/exports/day.parquet`). Such a table reads that file and cannot be written.
pub fn is_single_file(location: &str) -> bool {
    let trimmed = location.trim_end_matches('/');
    if location.ends_with('/') {
        return false;
    }
    if let Some(path) = trimmed.strip_prefix("file://").or_else(|| trimmed.strip_prefix('/').map(|_| trimmed)) {
        return std::fs::metadata(path).map(|m| m.is_file()).unwrap_or(false);
    }
    if trimmed.starts_with("s3://") || trimmed.starts_with("s3a://") {
        let last = trimmed.rsplit('/').next().unwrap_or_default().to_ascii_lowercase();
        let (_, ext) = match last.rsplit_once('.') {
            Some(x) => x,
            None => return false,
        };
        return matches!(ext, "parquet" | "json" | "jsonl" | "ndjson" | "csv" | "tsv" | "gz" | "bz2" | "xz" | "zst");
    }
    false
}

/// Parse a table location; a directory always ends in `/` so DataFusion treats it as a
/// collection (and can insert into it). A location naming one file ([`is_single_file`]) stays
/// that file.
pub fn table_url(location: &str) -> Result<ListingTableUrl> {
    let mut location = location.to_string();
    if !location.ends_with('/') && !is_single_file(&location) {
        location.push('/');
    }
    if let Some(path) = location.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(FilesError::InvalidLocation(location.clone(), "file:// locations must be absolute".into()).into());
        }
    } else if !location.starts_with("s3://") && !location.starts_with('/') {
        return Err(FilesError::InvalidLocation(
            location.clone(),
            "use an absolute path, file:///path or s3://bucket/prefix".into(),
        )
        .into());
    }
    ListingTableUrl::parse(&location).map_err(|e| FilesError::InvalidLocation(location, e.to_string()).into())
}

#[async_trait]
impl TableProviderFactory for FilesTableProviderFactory {
    async fn create(&self, state: &dyn Session, cmd: &CreateExternalTable) -> Result<Arc<dyn TableProvider>> {
        let (url, listing, _) = self.listing_parts(state, cmd)?;
        let table_schema: SchemaRef = Arc::new(cmd.schema.as_arrow().clone());

        let (file_schema, partition_cols) = if table_schema.fields().is_empty() {
            // No column list: infer from the files; partition values are strings.
            let file_schema = listing.infer_schema(state, &url).await.map_err(|e| infer_error(&url, e))?;
            let parts = cmd.table_partition_cols.iter().map(|c| (c.clone(), DataType::Utf8)).collect::<Vec<_>>();
            (file_schema, parts)
        } else {
            let mut parts = Vec::with_capacity(cmd.table_partition_cols.len());
            for col in &cmd.table_partition_cols {
                let field = table_schema
                    .field_with_name(col)
                    .map_err(|_| FilesError::UnknownPartitionColumn(col.clone()))?;
                parts.push((col.clone(), field.data_type().clone()));
            }
            let file_fields = table_schema
                .fields()
                .iter()
                .filter(|f| !cmd.table_partition_cols.contains(f.name()))
                .cloned()
                .collect::<Vec<_>>();
            (Arc::new(Schema::new(file_fields)), parts)
        };

        let listing = listing.with_table_partition_cols(partition_cols);
        let config = ListingTableConfig::new(url).with_listing_options(listing).with_schema(file_schema);
        Ok(Arc::new(ListingTable::try_new(config)?))
    }
}

fn infer_error(url: &ListingTableUrl, e: datafusion::error::DataFusionError) -> datafusion::error::DataFusionError {
    match e {
        datafusion::error::DataFusionError::Plan(_) => FilesError::NothingToInfer(url.to_string()).into(),
        other => other,
    }
}

#[async_trait]
impl Connector for FilesTableProviderFactory {
    fn names(&self) -> &'static [&'static str] {
        &["parquet", "json", "csv"]
    }

    fn options(&self) -> &'static [OptionSpec] {
        options()
    }

    fn stores_files(&self) -> bool {
        true
    }

    /// The location must exist: a local directory, or an S3 bucket Bowman can list with the
    /// table's credentials. This catches typos, dead endpoints and refused credentials at
    /// `CREATE TABLE` rather than at the first query.
    async fn validate(&self, state: &dyn Session, cmd: &CreateExternalTable) -> Result<()> {
        let (url, _, _) = self.listing_parts(state, cmd)?;
        self.check_location(state, &url).await
    }
}
