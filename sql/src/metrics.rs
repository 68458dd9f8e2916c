//! Bowman's metrics, as process-wide statics (one set per process, like the server's other
//! counters), and their Prometheus text exposition (format 0.0.4) for `GET /metrics`.
//!
//! Hand-written atomics and a ~100-line encoder rather than the `prometheus` or
//! `metrics-exporter-prometheus` crates: Bowman has a handful of families with small, fixed
//! label sets, and the text format is simple; a dependency would bring its own registry,
//! global recorder and (for the exporter) an HTTP server Bowman already has, for no gain.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the statement duration histogram's buckets.
pub const DURATION_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// (protocol, outcome, SQLSTATE class) -> statements finished.
static STATEMENTS: Mutex<BTreeMap<(&'static str, &'static str, String), u64>> = Mutex::new(BTreeMap::new());
static DURATION: Mutex<Histogram> = Mutex::new(Histogram { counts: [0; DURATION_BUCKETS.len()], count: 0, sum: 0.0 });
static ROWS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static COMMITS: AtomicU64 = AtomicU64::new(0);
static CONFLICTS: AtomicU64 = AtomicU64::new(0);

struct Histogram {
    /// Non-cumulative counts per bucket of [`DURATION_BUCKETS`] (what falls above the last is
    /// only in `count`).
    counts: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// A statement ended (called by the registry, once per statement).
pub(crate) fn record_statement(protocol: &'static str, outcome: &'static str, sqlstate: &str, duration: Duration, rows: u64, bytes: u64) {
    let class: String = sqlstate.chars().take(2).collect();
    *STATEMENTS.lock().expect("statement metrics").entry((protocol, outcome, class)).or_default() += 1;
    let seconds = duration.as_secs_f64();
    {
        let mut h = DURATION.lock().expect("duration histogram");
        if let Some(i) = DURATION_BUCKETS.iter().position(|b| seconds <= *b) {
            h.counts[i] += 1;
        }
        h.count += 1;
        h.sum += seconds;
    }
    ROWS.fetch_add(rows, Ordering::Relaxed);
    BYTES.fetch_add(bytes, Ordering::Relaxed);
}

/// A catalog commit of written data: `ok` when it committed, false when it came back with a
/// conflict (40001). Called where the commit is applied.
pub fn record_commit(ok: bool) {
    let counter = if ok { &COMMITS } else { &CONFLICTS };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// [`record_commit`] from a commit's result (other errors are neither).
pub(crate) fn record_commit_result<T>(result: &std::result::Result<T, bowman_catalog::CatalogError>) {
    match result {
        Ok(_) => record_commit(true),
        Err(bowman_catalog::CatalogError::Conflict(_)) => record_commit(false),
        Err(_) => {}
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Every metric of this process and of `engine` (its object-store calls, sessions and running
/// statements) in the Prometheus text format.
pub fn render(engine: &crate::Engine) -> String {
    let mut out = String::new();
    family(&mut out, "bowman_statements_total", "counter", "Statements finished, by front end, outcome (succeeded, failed, cancelled) and SQLSTATE class (00 for success).");
    for ((protocol, outcome, class), n) in STATEMENTS.lock().expect("statement metrics").iter() {
        let _ = writeln!(out, "bowman_statements_total{{protocol=\"{protocol}\",outcome=\"{outcome}\",sqlstate_class=\"{class}\"}} {n}");
    }
    family(&mut out, "bowman_statement_duration_seconds", "histogram", "Time from a statement's start to the end of its output.");
    {
        let h = DURATION.lock().expect("duration histogram");
        let mut cumulative = 0;
        for (bound, n) in DURATION_BUCKETS.iter().zip(h.counts.iter()) {
            cumulative += n;
            let _ = writeln!(out, "bowman_statement_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "bowman_statement_duration_seconds_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "bowman_statement_duration_seconds_sum {}", h.sum);
        let _ = writeln!(out, "bowman_statement_duration_seconds_count {}", h.count);
    }
    family(&mut out, "bowman_rows_returned_total", "counter", "Rows statements returned (or wrote, for commands that report a count).");
    let _ = writeln!(out, "bowman_rows_returned_total {}", ROWS.load(Ordering::Relaxed));
    family(&mut out, "bowman_bytes_returned_total", "counter", "Bytes of the Arrow data statements returned, before wire encoding.");
    let _ = writeln!(out, "bowman_bytes_returned_total {}", BYTES.load(Ordering::Relaxed));
    family(&mut out, "bowman_statements_running", "gauge", "Statements running now.");
    let _ = writeln!(out, "bowman_statements_running {}", engine.statements.running_count());
    family(&mut out, "bowman_connections", "gauge", "Open sessions by front end: pgwire connections, Flight SQL requests being served.");
    for (protocol, n) in engine.statements.sessions_by_protocol() {
        let _ = writeln!(out, "bowman_connections{{protocol=\"{protocol}\"}} {n}");
    }
    family(&mut out, "bowman_object_store_calls_total", "counter", "Calls made to object storage (local disk and S3), by kind.");
    let c = engine.store_calls().snapshot();
    for (kind, n) in [
        ("get", c.gets),
        ("put", c.puts),
        ("multipart_put", c.multipart_puts),
        ("delete", c.deletes),
        ("list", c.lists),
        ("copy", c.copies),
        ("rename", c.renames),
    ] {
        let _ = writeln!(out, "bowman_object_store_calls_total{{kind=\"{kind}\"}} {n}");
    }
    family(&mut out, "bowman_catalog_commits_total", "counter", "Writes committed to the catalog.");
    let _ = writeln!(out, "bowman_catalog_commits_total {}", COMMITS.load(Ordering::Relaxed));
    family(&mut out, "bowman_catalog_conflicts_total", "counter", "Commits refused because another write changed the same tables first (40001).");
    let _ = writeln!(out, "bowman_catalog_conflicts_total {}", CONFLICTS.load(Ordering::Relaxed));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_fall_in_their_bucket() {
        super::record_statement("internal", "succeeded", "00000", std::time::Duration::from_millis(3), 2, 10);
        let h = super::DURATION.lock().unwrap();
        assert!(h.counts[1] >= 1 && h.count >= 1);
    }
}
