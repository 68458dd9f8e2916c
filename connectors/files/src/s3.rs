use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::catalog::Session;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::Result;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::errors::FilesError;

/// Server-wide S3 settings (from `bowman.toml` / `BOWMAN_S3_*`), the middle layer between a
/// table's OPTIONS and the `AWS_*` environment. Keys are `object_store` S3 configuration keys
/// (`endpoint`, `region`, `access_key_id`, `secret_access_key`, `allow_http`, ...).
#[derive(Clone, Default)]
pub struct S3Settings(pub BTreeMap<String, String>);

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Show which keys are set, never their values: some are credentials.
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// One client per (bucket, settings), built once and registered with the runtime for each
/// table that uses it.
#[derive(Debug)]
pub(crate) struct S3Stores {
    defaults: S3Settings,
    calls: Arc<crate::StoreCalls>,
    built: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

/// Table options that configure the S3 client, in `object_store`'s key names.
fn s3_keys(options: &BTreeMap<String, String>) -> Result<Vec<(AmazonS3ConfigKey, String)>> {
    let mut keys = Vec::new();
    for (k, v) in options {
        let key = k.strip_prefix("s3.").unwrap_or(k);
        if matches!(key, "header" | "delimiter" | "sep" | "quote" | "escape" | "compression" | "file_extension" | "read_timeout") {
            continue;
        }
        if let Ok(parsed) = AmazonS3ConfigKey::from_str(key) {
            if matches!(parsed, AmazonS3ConfigKey::Bucket) {
                continue;
            }
            keys.push((parsed, v.clone()));
        }
    }
    Ok(keys)
}

impl S3Stores {
    pub(crate) fn new(defaults: S3Settings, calls: Arc<crate::StoreCalls>) -> Self {
        // reqwest (under object_store) is built with rustls but no crypto provider; without one
        // every HTTPS or HTTP request fails with an opaque "builder error".
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        S3Stores { defaults, calls, built: Mutex::new(HashMap::new()) }
    }

    /// Make sure the runtime has a client for the table's bucket.
    pub(crate) fn register(&self, state: &dyn Session, url: &ListingTableUrl, options: &BTreeMap<String, String>) -> Result<()> {
        let parsed = url::Url::parse(url.as_str()).map_err(|e| FilesError::InvalidLocation(url.to_string(), e.to_string()))?;
        let bucket = parsed
            .host_str()
            .ok_or_else(|| FilesError::InvalidLocation(url.to_string(), "no bucket name".into()))?
            .to_string();
        let mut settings = s3_keys(&self.defaults.0)?;
        settings.extend(s3_keys(options)?);
        let read_timeout = read_timeout(&self.defaults.0, options)?;
        // The cache key holds credentials, so it is never logged.
        let cache_key = format!("{bucket}\u{0}{settings:?}\u{0}{read_timeout:?}");
        let store = {
            let mut built = self.built.lock().expect("s3 store cache");
            if let Some(store) = built.get(&cache_key) {
                store.clone()
            } else {
                // Client options first: `with_client_options` replaces the whole set, so keys
                // such as `allow_http` must be applied after it — the `AWS_*` environment's
                // too, which is why this does not start from `AmazonS3Builder::from_env`.
                let mut builder = AmazonS3Builder::new()
                    .with_client_options(
                        ClientOptions::new()
                            .with_connect_timeout(Duration::from_secs(5))
                            .with_timeout(Duration::from_secs(120)),
                    )
                    .with_retry(RetryConfig {
                        backoff: BackoffConfig::default(),
                        max_retries: 3,
                        retry_timeout: Duration::from_secs(20),
                    });
                for (k, v) in environment() {
                    builder = builder.with_config(k, v);
                }
                builder = builder.with_bucket_name(&bucket);
                for (k, v) in settings {
                    builder = builder.with_config(k, v);
                }
                let s3: Arc<dyn ObjectStore> = Arc::new(
                    builder
                        .build()
                        .map_err(|e| FilesError::InvalidOption("s3".into(), url.to_string(), e.to_string()))?,
                );
                let s3: Arc<dyn ObjectStore> = Arc::new(crate::deadline::DeadlineStore::new(s3, read_timeout));
                let store: Arc<dyn ObjectStore> = Arc::new(crate::CountingStore::new(s3, self.calls.clone()));
                built.insert(cache_key, store.clone());
                store
            }
        };
        let base = url::Url::parse(&format!("s3://{bucket}")).expect("valid bucket URL");
        state.runtime_env().register_object_store(&base, store);
        Ok(())
    }
}

/// How long S3 may leave a request unanswered (see [`crate::deadline`]): the table's
/// `read_timeout` option, else the server's S3 setting, else 5 s.
fn read_timeout(defaults: &BTreeMap<String, String>, options: &BTreeMap<String, String>) -> Result<Duration> {
    let given = options
        .get("read_timeout")
        .or_else(|| options.get("s3.read_timeout"))
        .or_else(|| defaults.get("read_timeout"));
    match given {
        None => Ok(crate::deadline::DEFAULT_READ_TIMEOUT),
        Some(v) => crate::deadline::parse_read_timeout(v).ok_or_else(|| {
            FilesError::InvalidOption(
                "read_timeout".into(),
                v.clone(),
                "give seconds (or ms, s, min) between 0.1 s and 1 hour".into(),
            )
            .into()
        }),
    }
}

/// The standard `AWS_*` environment (`AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, `AWS_REGION`,
/// `AWS_ACCESS_KEY_ID`, ...), the lowest layer of S3 settings, as `object_store` reads it.
fn environment() -> Vec<(AmazonS3ConfigKey, String)> {
    let mut out = Vec::new();
    for (k, v) in std::env::vars() {
        let key = k.to_ascii_lowercase();
        if !key.starts_with("aws_") {
            continue;
        }
        if let Ok(parsed) = AmazonS3ConfigKey::from_str(&key) {
            if !matches!(parsed, AmazonS3ConfigKey::Bucket) {
                out.push((parsed, v));
            }
        }
    }
    out
}

/// What an S3 client error means for the user, with what to set when it is a setting.
pub(crate) fn explain(reason: String) -> String {
    if reason.contains("builder error") || reason.contains("URL scheme is not allowed") {
        return format!(
            "{reason} (an http:// endpoint needs plain HTTP allowed: OPTIONS (allow_http 'true'), \
             BOWMAN_S3_ALLOW_HTTP=true, or AWS_ALLOW_HTTP=true)"
        );
    }
    reason
}

/// List the table's prefix once to prove the endpoint answers, the credentials work and the
/// bucket exists.
pub(crate) async fn check_reachable(store: &dyn ObjectStore, url: &ListingTableUrl) -> Result<()> {
    match store.list_with_delimiter(Some(url.prefix())).await {
        Ok(_) => Ok(()),
        Err(e) => {
            let location = url.to_string();
            let reason = e.to_string();
            Err(match e {
                object_store::Error::NotFound { .. } => FilesError::S3BucketNotFound(location),
                object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
                    FilesError::S3AccessDenied { location, reason }
                }
                _ if reason.contains("NoSuchBucket") => FilesError::S3BucketNotFound(location),
                _ if reason.contains("AccessDenied") || reason.contains("SignatureDoesNotMatch") || reason.contains("InvalidAccessKeyId") => {
                    FilesError::S3AccessDenied { location, reason }
                }
                _ => FilesError::S3Unreachable { location, reason: explain(reason) },
            }
            .into())
        }
    }
}

impl S3Stores {
    /// Where the credentials for `bucket` come from, through the same layers as the bucket's
    /// client: the table's options, the server's S3 settings, then the `AWS_*` environment
    /// (static keys, web identity, container or instance credentials).
    pub(crate) fn credential_provider(
        &self,
        bucket: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<object_store::aws::AwsCredentialProvider> {
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let mut settings = s3_keys(&self.defaults.0)?;
        settings.extend(s3_keys(options)?);
        for (k, v) in settings {
            builder = builder.with_config(k, v);
        }
        let s3 = builder.build().map_err(|e| FilesError::InvalidOption("s3".into(), format!("s3://{bucket}"), e.to_string()))?;
        Ok(s3.credentials().clone())
    }
}

impl crate::FilesTableProviderFactory {
    /// The server's own S3 credentials for the bucket of `location` (`s3://bucket/...`), as file
    /// tables there would use them; Redshift's `forward_spark_s3_credentials` hands them to UNLOAD.
    /// Ask the provider for the credential each time: temporary ones are refreshed.
    pub fn s3_credential_provider(
        &self,
        location: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<object_store::aws::AwsCredentialProvider> {
        let rest = location
            .strip_prefix("s3://")
            .or_else(|| location.strip_prefix("s3a://"))
            .ok_or_else(|| FilesError::InvalidLocation(location.to_string(), "not an s3:// URL".into()))?;
        let bucket = rest.split('/').next().unwrap_or_default();
        if bucket.is_empty() {
            return Err(FilesError::InvalidLocation(location.to_string(), "no bucket name".into()).into());
        }
        self.s3.credential_provider(bucket, options)
    }
}
