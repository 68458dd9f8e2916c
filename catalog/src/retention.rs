//! What the catalog keeps so that files no reader needs any more can be deleted by any node,
//! across restarts: directories a commit retired (with their retirement time) and writes in
//! progress (write intents, with a lease their writer renews).
//!
//! A commit directory of a managed table is, at any moment, in exactly one of these states:
//! being written (an intent names its commit), live (`bowman_live_dirs`), retired
//! (`bowman_retired_dirs`), or garbage. Commits move a directory from the first to the second
//! and from the second to the third atomically, so a directory that is in none of the three
//! when the catalog is read *after* the directory was seen in a listing is garbage.

use crate::error::Result;
use crate::store::Catalog;

/// A commit directory an overwrite retired: readers that planned before the commit may still
/// read it until `file_retention` has passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredDir {
    /// The table's location when the directory was retired.
    pub location: String,
    /// The partition path (`dt=2018-03-05`, empty for unpartitioned tables).
    pub partition: String,
    /// The `_commit` value.
    pub dir: String,
    pub database: String,
    pub table: String,
    /// Milliseconds since the Unix epoch.
    pub retired_at: i64,
}

impl RetiredDir {
    /// The directory relative to the location, as listings spell it.
    pub fn relative(&self) -> String {
        if self.partition.is_empty() { format!("_commit={}", self.dir) } else { format!("{}/_commit={}", self.partition, self.dir) }
    }
}

/// A write that has started producing files and has not committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteIntent {
    /// The write's commit id (`<13 digits>-<12 hex>`): its directories start with it.
    pub commit: String,
    pub database: String,
    pub table: String,
    /// Which server writes (host and process), for operators.
    pub node: String,
    /// Milliseconds since the Unix epoch.
    pub started_at: i64,
    /// The write counts as dead once this has passed without a renewal.
    pub lease_until: i64,
}

/// Which retired directories a sweep claims.
#[derive(Debug, Clone)]
pub enum RetiredClaim {
    /// Every directory retired at or before this time (ms since the epoch).
    RetiredBefore(i64),
    /// These directories of one location (what one commit retired).
    Dirs { location: String, dirs: Vec<String> },
}

/// Commit ids named in `dirs` (commit directory names, or Listed files
/// `<id>.bowman-<commit>.<ext>`): the first `<13 digits>-<12 hex>` of each last path segment.
pub(crate) fn commit_ids<'a>(dirs: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = dirs.into_iter().filter_map(commit_id_in).map(str::to_string).collect();
    out.sort();
    out.dedup();
    out
}

fn commit_id_in(path: &str) -> Option<&str> {
    let name = path.rsplit('/').next()?;
    let b = name.as_bytes();
    (0..b.len().saturating_sub(25)).find_map(|i| {
        let w = &b[i..i + 26];
        let starts = i == 0 || !b[i - 1].is_ascii_digit();
        let ok = starts && w[..13].iter().all(u8::is_ascii_digit) && w[13] == b'-' && w[14..].iter().all(u8::is_ascii_hexdigit);
        let ends = b.get(i + 26).is_none_or(|c| !c.is_ascii_hexdigit());
        (ok && ends).then(|| &name[i..i + 26])
    })
}

impl Catalog {
    /// Record that a write is about to produce files under `commit`.
    pub async fn register_write(&self, intent: &WriteIntent) -> Result<()> {
        self.store().register_write(intent).await
    }

    /// Extend a write's lease; false once the write committed or was given up (its intent is
    /// gone or expired), so its writer stops renewing.
    pub async fn renew_write(&self, commit: &str, lease_until: i64) -> Result<bool> {
        self.store().renew_write(commit, lease_until).await
    }

    /// A write that will not commit (it failed): its lease ends now, so a sweeper collects its
    /// files at once. Nothing happens when it committed.
    pub async fn abandon_write(&self, commit: &str) -> Result<()> {
        self.store().abandon_write(commit).await
    }

    /// Every write intent, live or expired.
    pub async fn write_intents(&self) -> Result<Vec<WriteIntent>> {
        self.store().write_intents().await
    }

    /// Forget intents whose files a sweeper deleted.
    pub async fn forget_writes(&self, commits: &[String]) -> Result<()> {
        self.store().forget_writes(commits).await
    }

    /// Every retired directory (claimed or not).
    pub async fn retired_dirs(&self) -> Result<Vec<RetiredDir>> {
        self.store().retired_dirs().await
    }

    /// Claim retired directories for deletion: each row is handed to one caller only (on any
    /// node) until `claim_until`; a claim whose holder died before forgetting the row lapses
    /// then and the directory is claimed again (deleting twice is harmless).
    pub async fn claim_retired_dirs(&self, which: &RetiredClaim, now: i64, claim_until: i64) -> Result<Vec<RetiredDir>> {
        self.store().claim_retired_dirs(which, now, claim_until).await
    }

    /// Forget retired directories once deleted.
    pub async fn forget_retired_dirs(&self, dirs: &[RetiredDir]) -> Result<()> {
        self.store().forget_retired_dirs(dirs).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_ids_come_from_either_layout() {
        let dirs = [
            "1764590000000-0123456789ab",
            "1764590000000-0123456789ab-0123456789abcdef0123456789abcdef",
            "dt=2018-03-05/0f0e.bowman-1764590000001-abcdefabcdef.parquet",
            "dt=1764590000009-0123456789ab/other.parquet",
            "not-a-commit",
        ];
        assert_eq!(commit_ids(dirs), vec!["1764590000000-0123456789ab".to_string(), "1764590000001-abcdefabcdef".to_string()]);
    }
}
