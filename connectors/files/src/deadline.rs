//! An object store wrapper that gives up on a storage server that stopped answering.
//!
//! `object_store`'s request timeout covers a whole request, body included, so it must be long
//! enough for the largest file a scan streams; a frozen server (a stopped process, a dead
//! network path whose TCP connections stay open) would hold a query that long, and retries
//! multiply it. This wrapper bounds each wait instead: the answer to a request and every chunk of
//! a streamed body or listing must arrive within `read_timeout` (S3 OPTIONS / settings key
//! `read_timeout`, default [`DEFAULT_READ_TIMEOUT`]). A timeout is reported as
//! [`StorageStalled`], which Bowman answers with SQLSTATE 08006.
//!
//! Writes (PUT, multipart parts) are left to the client's request timeout: an upload's duration
//! grows with its size.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// How long Bowman waits for any answer from S3 before it treats the connection as lost.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The storage server sent nothing within the read timeout.
#[derive(Debug)]
pub struct StorageStalled {
    pub what: &'static str,
    pub timeout: Duration,
}

impl fmt::Display for StorageStalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the storage server sent no answer to a {} within {:?} (read_timeout); it stopped answering or the connection was lost",
            self.what, self.timeout
        )
    }
}

impl std::error::Error for StorageStalled {}

fn stalled(what: &'static str, timeout: Duration) -> object_store::Error {
    let e = std::io::Error::new(std::io::ErrorKind::TimedOut, StorageStalled { what, timeout });
    object_store::Error::Generic { store: "S3", source: Box::new(e) }
}

#[derive(Debug)]
pub struct DeadlineStore {
    inner: Arc<dyn ObjectStore>,
    timeout: Duration,
}

impl DeadlineStore {
    pub fn new(inner: Arc<dyn ObjectStore>, timeout: Duration) -> Self {
        DeadlineStore { inner, timeout }
    }

    async fn bounded<T>(&self, what: &'static str, f: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(stalled(what, self.timeout)),
        }
    }
}

/// Each item of `stream` must arrive within `timeout` of the one before.
fn bounded_stream<T: Send + 'static>(
    stream: BoxStream<'static, Result<T>>,
    what: &'static str,
    timeout: Duration,
) -> BoxStream<'static, Result<T>> {
    futures::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout(timeout, stream.next()).await {
            Ok(Some(item)) => Some((item, Some(stream))),
            Ok(None) => None,
            // End the stream after the error: the connection under it is not trusted again.
            Err(_) => Some((Err(stalled(what, timeout)), None)),
        }
    })
    // Fused: some readers poll a byte stream again after its end (delta-kernel's JSON reader
    // does, once per commit file), which object_store's own streams allow and `unfold` does not.
    .fuse()
    .boxed()
}

impl fmt::Display for DeadlineStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Deadline({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for DeadlineStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.bounded("multipart upload request", self.inner.put_multipart_opts(location, opts)).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let head = options.head;
        let mut got = self.bounded(if head { "HEAD request" } else { "GET request" }, self.inner.get_opts(location, options)).await?;
        if let GetResultPayload::Stream(s) = got.payload {
            got.payload = GetResultPayload::Stream(bounded_stream(s, "read of an object's body", self.timeout));
        }
        Ok(got)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<bytes::Bytes>> {
        // Several ranged GETs, run concurrently by the client: bounded as a whole, with room for
        // each to take a full timeout.
        let budget = self.timeout * (ranges.len().clamp(1, 4) as u32);
        match tokio::time::timeout(budget, self.inner.get_ranges(location, ranges)).await {
            Ok(r) => r,
            Err(_) => Err(stalled("ranged GET", budget)),
        }
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        bounded_stream(self.inner.delete_stream(locations), "DELETE request", self.timeout)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        bounded_stream(self.inner.list(prefix), "LIST request", self.timeout)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        bounded_stream(self.inner.list_with_offset(prefix, offset), "LIST request", self.timeout)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.bounded("LIST request", self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// Parse a `read_timeout` value: seconds (`5`, `2.5`) or with a unit (`500ms`, `10s`, `1min`).
pub fn parse_read_timeout(v: &str) -> Option<Duration> {
    let v = v.trim();
    let (num, unit) = match v.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&v[..i], v[i..].trim()),
        None => (v, "s"),
    };
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "sec" | "secs" | "seconds" => n,
        "min" | "m" => n * 60.0,
        _ => return None,
    };
    // Between 100 ms and one hour: past that a stopped server is never noticed.
    (0.1..=3600.0).contains(&secs).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_timeouts() {
        assert_eq!(parse_read_timeout("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_read_timeout("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_read_timeout("2min"), Some(Duration::from_secs(120)));
        assert_eq!(parse_read_timeout("1e100"), None);
        assert_eq!(parse_read_timeout("0"), None);
        assert_eq!(parse_read_timeout("99999999999999999999"), None);
        assert_eq!(parse_read_timeout("-1"), None);
    }
}
