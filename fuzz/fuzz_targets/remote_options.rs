//! The OPTIONS of a SQL-database table (`USING postgres | mysql | redshift | jdbc`), parsed as
//! Bowman parses them at CREATE TABLE and whenever the table is opened: secret splitting (a
//! password inside the URL moves to the secret options), `${env:NAME}` references, TLS keys in
//! the URL and the OPTIONS, timeouts, pool and batch sizes, and Spark's partitioned reads
//! (`partitionColumn`, bounds, `numPartitions`) with the range predicates they become. Any
//! options must give a table or an error with a SQLSTATE, never a panic.
//!
//! Input: one `key=value` per line (a value may be empty; lines without `=` are keys).
#![no_main]

use std::collections::{BTreeMap, HashMap};

use bowman_connector_remote::options::{MAX_POOL_SIZE, MAX_TIMEOUT_SECS, RemoteOptions, remove_url_password, split_options, strip_jdbc};
use bowman_connector_remote::REMOTE_OPTIONS;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let options: BTreeMap<String, String> = text
        .lines()
        .map(|line| match line.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (line.to_string(), String::new()),
        })
        .collect();
    // What the catalog stores: plain and secret options apart, the URL without its password.
    let (plain, secret) = split_options(REMOTE_OPTIONS, &options);
    if let Some(url) = plain.iter().find(|(k, _)| k.eq_ignore_ascii_case("url")).map(|(_, v)| v) {
        let _ = remove_url_password(url);
        let _ = strip_jdbc(url);
    }
    // What a connector opens the table with: both halves again, as one map.
    let mut all: HashMap<String, String> = plain.into_iter().collect();
    all.extend(secret);
    match RemoteOptions::parse(&all, "fuzz.t") {
        Ok(parsed) => {
            let _ = format!("{parsed:?}");
            // Within the ranges the connectors' deadline arithmetic and pools are safe in.
            let max = std::time::Duration::from_secs(MAX_TIMEOUT_SECS);
            assert!(parsed.connect_timeout <= max && parsed.query_timeout.is_none_or(|t| t <= max), "{parsed:?}");
            assert!((1..=MAX_POOL_SIZE).contains(&parsed.pool_size), "{parsed:?}");
            let _ = parsed.secrets();
            if let Some(p) = &parsed.partitioning {
                let predicates = p.predicates("\"c\"");
                assert!(!predicates.is_empty() && predicates.len() <= p.num.max(1));
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
