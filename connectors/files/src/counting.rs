//! An object store wrapper that counts the calls made through it, per kind.
//!
//! Bowman wraps every store it registers (local disk and each S3 bucket), so what a statement
//! did to storage is observable: tests assert that commits never rename or copy, and the same
//! counters will feed `/metrics`.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// Calls made to the stores Bowman registered, since start-up.
#[derive(Debug, Default)]
pub struct StoreCalls {
    pub puts: AtomicU64,
    pub multipart_puts: AtomicU64,
    pub gets: AtomicU64,
    pub deletes: AtomicU64,
    pub lists: AtomicU64,
    pub copies: AtomicU64,
    pub renames: AtomicU64,
}

/// The counts of [`StoreCalls`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreCallCounts {
    pub puts: u64,
    pub multipart_puts: u64,
    pub gets: u64,
    pub deletes: u64,
    pub lists: u64,
    pub copies: u64,
    pub renames: u64,
}

impl StoreCalls {
    pub fn snapshot(&self) -> StoreCallCounts {
        StoreCallCounts {
            puts: self.puts.load(Ordering::Relaxed),
            multipart_puts: self.multipart_puts.load(Ordering::Relaxed),
            gets: self.gets.load(Ordering::Relaxed),
            deletes: self.deletes.load(Ordering::Relaxed),
            lists: self.lists.load(Ordering::Relaxed),
            copies: self.copies.load(Ordering::Relaxed),
            renames: self.renames.load(Ordering::Relaxed),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    calls: Arc<StoreCalls>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn ObjectStore>, calls: Arc<StoreCalls>) -> Self {
        CountingStore { inner, calls }
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        bump(&self.calls.puts);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        bump(&self.calls.multipart_puts);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        bump(&self.calls.gets);
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<bytes::Bytes>> {
        bump(&self.calls.gets);
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let calls = self.calls.clone();
        let counted = locations.inspect(move |_| bump(&calls.deletes)).boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        bump(&self.calls.lists);
        skip_vanished(self.inner.list(prefix))
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        bump(&self.calls.lists);
        skip_vanished(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        bump(&self.calls.lists);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        bump(&self.calls.copies);
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        bump(&self.calls.renames);
        self.inner.rename_opts(from, to, options).await
    }
}

/// A file deleted while its directory is being listed is simply not there. object_store's
/// local store reads each entry's metadata after reading the directory, and reports a file
/// that went in between as an error that would fail the whole scan (Bowman deletes replaced
/// files while other statements list the same table).
fn skip_vanished(stream: BoxStream<'static, Result<ObjectMeta>>) -> BoxStream<'static, Result<ObjectMeta>> {
    stream
        .filter(|item| futures::future::ready(!matches!(item, Err(object_store::Error::NotFound { .. }))))
        .boxed()
}
