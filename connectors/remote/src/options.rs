//! The options every SQL-database table takes, spelled as Spark's JDBC source spells them
//! (`url`, `dbtable`, `query`, `user`, `password`, `partitionColumn`, `lowerBound`, `upperBound`,
//! `numPartitions`, `queryTimeout`, `batchsize`), case-insensitively.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bowman_connector::{ConnectorError, ErrorKind, OptionSpec, resolve_env_refs, split_secret_options};
use chrono::{NaiveDate, NaiveDateTime};

use crate::tls::{TlsOptions, split_url_tls};

pub const REMOTE_OPTIONS: &[OptionSpec] = &[
    OptionSpec::new("url", "connection URL: postgres://host:port/db, mysql://host:port/db or a jdbc: URL"),
    OptionSpec::new("dbtable", "remote table, as schema.table"),
    OptionSpec::new("table", "alias of dbtable"),
    OptionSpec::new("query", "a SELECT whose result is the table (instead of dbtable)"),
    OptionSpec::new("user", "user name (overrides the URL's)"),
    OptionSpec::secret("password", "password (or ${env:NAME}); stored apart, never shown"),
    OptionSpec::new("partitioncolumn", "numeric, date or timestamp column that splits large reads"),
    OptionSpec::new("lowerbound", "lowest partitionColumn value of the split (rows below still read)"),
    OptionSpec::new("upperbound", "highest partitionColumn value of the split (rows above still read)"),
    OptionSpec::new("numpartitions", "how many parallel range queries read the table"),
    OptionSpec::new("connect_timeout", "seconds to wait for a connection (default 5, at most 3600)"),
    OptionSpec::new("querytimeout", "seconds a remote statement may run (default: no limit, at most 2147483)"),
    OptionSpec::new("query_timeout", "alias of queryTimeout"),
    OptionSpec::new("liveness_interval", "seconds a statement may go without an answer before Bowman checks, on a new connection, that the database still answers (default 3; 0: never)"),
    OptionSpec::new("pool_size", "connections kept to this database (default 8, at least numPartitions, at most 1024)"),
    OptionSpec::new("batchsize", "rows per INSERT statement when writing (default 1000)"),
    OptionSpec::new("sslmode", "TLS: disable, prefer (PostgreSQL's default), require, verify-ca or verify-full; MySQL's DISABLED (its default), REQUIRED, VERIFY_CA, VERIFY_IDENTITY too"),
    OptionSpec::new("ssl-mode", "alias of sslmode (MySQL's spelling)"),
    OptionSpec::new("ssl_mode", "alias of sslmode"),
    OptionSpec::new("sslrootcert", "PEM file of the CA certificates that sign the server's certificate ('system': the system trust store)"),
    OptionSpec::new("serversslcert", "alias of sslrootcert (MariaDB Connector/J)"),
    OptionSpec::new("sslca", "alias of sslrootcert"),
    OptionSpec::new("ssl-ca", "alias of sslrootcert (MySQL's spelling)"),
    OptionSpec::new("trustcertificatekeystoreurl", "Connector/J: a file: URL of a PEM CA file, as sslrootcert"),
    OptionSpec::new("ssl", "pgjdbc: true means sslmode verify-full"),
    OptionSpec::new("usessl", "Connector/J: true means sslMode REQUIRED (VERIFY_CA with verifyServerCertificate true)"),
    OptionSpec::new("requiressl", "Connector/J: true refuses connections without TLS"),
    OptionSpec::new("verifyservercertificate", "Connector/J: with useSSL, check the server's certificate against the CA"),
];

/// What a table reads: a remote table or the result of a query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RemoteSource {
    Table(String),
    Query(String),
}

/// The parsed options of one table. Secrets are resolved (`${env:NAME}`) and kept only here.
#[derive(Clone)]
pub struct RemoteOptions {
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub source: RemoteSource,
    pub partitioning: Option<PartitionSpec>,
    pub connect_timeout: Duration,
    pub query_timeout: Option<Duration>,
    /// How long a statement may wait for the database's next answer before Bowman checks, on a
    /// fresh connection, that the database still answers; `None`: never.
    pub liveness_interval: Option<Duration>,
    pub pool_size: usize,
    pub batch_size: usize,
    /// TLS to the database, from the URL's query and the OPTIONS (which win).
    pub tls: TlsOptions,
}

impl std::fmt::Debug for RemoteOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteOptions")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .field("source", &self.source)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// How long Bowman waits for a remote database to accept a connection, unless `connect_timeout` says.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a statement waits for the next answer before Bowman checks the database still answers.
pub const DEFAULT_LIVENESS_INTERVAL: Duration = Duration::from_secs(3);
const MAX_CONNECT_TIMEOUT_SECS: f64 = 3600.0;
/// PostgreSQL's own limit for statement_timeout: INT_MAX milliseconds.
const MAX_QUERY_TIMEOUT_SECS: f64 = 2_147_483.0;
/// The most connections one table's pool may keep.
pub const MAX_POOL_SIZE: usize = 1024;
/// The longest timeout any option takes (`queryTimeout`; PostgreSQL's INT_MAX milliseconds).
pub const MAX_TIMEOUT_SECS: u64 = MAX_QUERY_TIMEOUT_SECS as u64;

fn invalid(message: String) -> ConnectorError {
    ConnectorError::new(ErrorKind::InvalidOption, message)
}

impl RemoteOptions {
    /// Parse a table's options (keys case-insensitive). `url` may start with `jdbc:`.
    pub fn parse(options: &HashMap<String, String>, table: &str) -> Result<Self, ConnectorError> {
        let mut o: HashMap<String, String> = HashMap::new();
        for (k, v) in options {
            o.insert(k.to_ascii_lowercase(), resolve_env_refs(k, v)?);
        }
        let url = o.remove("url").ok_or_else(|| {
            invalid(format!("table {table} needs OPTIONS (url '...'), e.g. url 'postgres://host:5432/database'"))
        })?;
        // TLS settings may be in the URL (`?sslmode=require`, `?useSSL=true`); the driver gets
        // the URL without them, and the OPTIONS win over them.
        let (url, mut tls_keys) = split_url_tls(&url);
        for key in crate::tls::TLS_KEYS {
            if let Some(v) = o.get(*key) {
                tls_keys.insert(key.to_string(), v.clone());
            }
        }
        let tls = TlsOptions::parse(&tls_keys, table)?;
        let dbtable = o.remove("dbtable").or_else(|| o.remove("table"));
        let query = o.remove("query");
        let source = match (dbtable, query) {
            (Some(t), None) if !t.trim().is_empty() => RemoteSource::Table(t.trim().to_string()),
            (None, Some(q)) if !q.trim().is_empty() => RemoteSource::Query(q.trim().trim_end_matches(';').to_string()),
            (Some(_), Some(_)) => return Err(invalid(format!("table {table}: give either dbtable or query, not both"))),
            _ => return Err(invalid(format!("table {table} needs OPTIONS (dbtable 'schema.table') or (query 'SELECT ...')"))),
        };
        // Out-of-range values are refused with the range (22023): a duration past what a
        // timer can hold, or a pool of 2^64 connections, must not reach the drivers.
        let num = |key: &str, min: u64, max: u64| -> Result<Option<u64>, ConnectorError> {
            o.get(key)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .ok()
                        .filter(|n| (min..=max).contains(n))
                        .ok_or_else(|| invalid(format!("option {key} must be a whole number between {min} and {max}, not '{v}'")))
                })
                .transpose()
        };
        let secs = |key: &str, max: f64| -> Result<Option<Duration>, ConnectorError> {
            o.get(key)
                .map(|v| {
                    v.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite() && (0.0..=max).contains(s))
                        .map(Duration::from_secs_f64)
                        .ok_or_else(|| invalid(format!("option {key} must be a number of seconds between 0 and {max}, not '{v}'")))
                })
                .transpose()
        };
        let partitioning = PartitionSpec::parse(&o)?;
        if partitioning.is_some() && matches!(source, RemoteSource::Query(_)) {
            // Spark refuses this combination too: the range predicates need a column of a table.
            return Err(invalid(format!(
                "table {table}: partitionColumn works with dbtable, not query; wrap the query in a view in the remote database"
            )));
        }
        let parts = partitioning.as_ref().map(|p| p.num).unwrap_or(1);
        // A zero connect timeout would fail every connection: it means the default, as in libpq.
        let connect_timeout =
            secs("connect_timeout", MAX_CONNECT_TIMEOUT_SECS)?.filter(|d| !d.is_zero()).unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let query_timeout = secs("querytimeout", MAX_QUERY_TIMEOUT_SECS)?
            .or(secs("query_timeout", MAX_QUERY_TIMEOUT_SECS)?)
            .filter(|d| !d.is_zero());
        let liveness_interval = match secs("liveness_interval", MAX_CONNECT_TIMEOUT_SECS)? {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d.max(Duration::from_millis(100))),
            None => Some(DEFAULT_LIVENESS_INTERVAL),
        };
        let pool_size = (num("pool_size", 1, MAX_POOL_SIZE as u64)?.unwrap_or(8) as usize).max(parts).max(1);
        let batch_size = (num("batchsize", 0, u64::MAX)?.unwrap_or(1000).min(100_000) as usize).max(1);
        Ok(RemoteOptions {
            url,
            user: o.get("user").cloned(),
            password: o.get("password").cloned(),
            source,
            connect_timeout,
            query_timeout,
            liveness_interval,
            pool_size,
            batch_size,
            partitioning,
            tls,
        })
    }

    /// Secrets to scrub from any message that could echo them.
    pub fn secrets(&self) -> Vec<String> {
        self.password.iter().cloned().collect()
    }
}

/// `jdbc:postgresql://h/db` -> `postgresql://h/db`; other URLs unchanged.
pub fn strip_jdbc(url: &str) -> &str {
    url.strip_prefix("jdbc:").unwrap_or(url)
}

/// Split a table's options into (plain, secret): the connector's secret options, plus a password
/// written inside the URL (`postgres://user:pw@host/db` or `?password=pw`), which becomes the
/// `password` secret (an explicit `password` option wins) while the URL is stored without it.
pub fn split_options(
    specs: &[OptionSpec],
    options: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let (mut plain, mut secret) = split_secret_options(specs, options);
    let url_key = plain.keys().find(|k| k.eq_ignore_ascii_case("url")).cloned();
    if let Some(key) = url_key {
        let (clean, password) = remove_url_password(&plain[&key]);
        plain.insert(key, clean);
        if let Some(p) = password {
            if !secret.keys().any(|k| k.eq_ignore_ascii_case("password")) {
                secret.insert("password".into(), p);
            }
        }
    }
    (plain, secret)
}

/// The URL without its password, and the password.
pub fn remove_url_password(url: &str) -> (String, Option<String>) {
    let jdbc = url.starts_with("jdbc:");
    let Ok(mut parsed) = url::Url::parse(strip_jdbc(url)) else {
        return (url.to_string(), None);
    };
    let mut password = parsed.password().map(|p| {
        url::form_urlencoded::parse(format!("p={p}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
    });
    if password.is_some() {
        let _ = parsed.set_password(None);
    }
    let pairs: Vec<(String, String)> = parsed.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    if pairs.iter().any(|(k, _)| k.eq_ignore_ascii_case("password")) {
        let mut kept = Vec::new();
        for (k, v) in pairs {
            if k.eq_ignore_ascii_case("password") {
                password.get_or_insert(v);
            } else {
                kept.push((k, v));
            }
        }
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    if password.is_none() {
        return (url.to_string(), None);
    }
    let s = parsed.to_string();
    (if jdbc { format!("jdbc:{s}") } else { s }, password)
}

/// Spark's JDBC split of a large read into `num` range queries over `column`.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionSpec {
    pub column: String,
    pub lower: Bound,
    pub upper: Bound,
    pub num: usize,
}

/// A partition bound: whole numbers, dates or timestamps (kept as microseconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    Int(i64),
    Date(i64),
    Timestamp(i64),
}

impl Bound {
    fn parse(v: &str) -> Option<Bound> {
        let v = v.trim();
        if let Ok(i) = v.parse::<i64>() {
            return Some(Bound::Int(i));
        }
        if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
            return Some(Bound::Date(d.signed_duration_since(NaiveDate::default()).num_days()));
        }
        for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
            if let Ok(t) = NaiveDateTime::parse_from_str(v, f) {
                return Some(Bound::Timestamp(t.and_utc().timestamp_micros()));
            }
        }
        None
    }

    fn value(&self) -> i64 {
        match *self {
            Bound::Int(v) | Bound::Date(v) | Bound::Timestamp(v) => v,
        }
    }

    fn with_value(&self, v: i64) -> Bound {
        match self {
            Bound::Int(_) => Bound::Int(v),
            Bound::Date(_) => Bound::Date(v),
            Bound::Timestamp(_) => Bound::Timestamp(v),
        }
    }

    /// The bound as a SQL literal (standard `DATE '...'` / `TIMESTAMP '...'` forms, which
    /// PostgreSQL, MySQL and Redshift all read).
    pub fn sql(&self) -> String {
        match *self {
            Bound::Int(v) => v.to_string(),
            Bound::Date(d) => format!("DATE '{}'", NaiveDate::default() + chrono::Duration::days(d)),
            Bound::Timestamp(t) => {
                let t = chrono::DateTime::from_timestamp_micros(t).unwrap_or_default().naive_utc();
                format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S%.6f"))
            }
        }
    }
}

impl PartitionSpec {
    fn parse(o: &HashMap<String, String>) -> Result<Option<Self>, ConnectorError> {
        let keys = ["partitioncolumn", "lowerbound", "upperbound", "numpartitions"];
        let given: Vec<&str> = keys.iter().copied().filter(|k| o.contains_key(*k)).collect();
        if given.is_empty() || given == ["numpartitions"] {
            return Ok(None);
        }
        if given.len() != 4 {
            return Err(invalid(
                "partitionColumn, lowerBound, upperBound and numPartitions must be given together".into(),
            ));
        }
        let bound = |k: &str| {
            Bound::parse(&o[k]).ok_or_else(|| {
                invalid(format!("option {k} '{}' is not a whole number, a date (YYYY-MM-DD) or a timestamp", o[k]))
            })
        };
        let (lower, upper) = (bound("lowerbound")?, bound("upperbound")?);
        if std::mem::discriminant(&lower) != std::mem::discriminant(&upper) || lower.value() >= upper.value() {
            return Err(invalid(format!(
                "lowerBound '{}' must be below upperBound '{}' and of the same kind",
                o["lowerbound"], o["upperbound"]
            )));
        }
        let num: usize = o["numpartitions"]
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=1024).contains(n))
            .ok_or_else(|| invalid(format!("numPartitions must be between 1 and 1024, not '{}'", o["numpartitions"])))?;
        Ok(Some(PartitionSpec { column: o["partitioncolumn"].trim().to_string(), lower, upper, num }))
    }

    /// One WHERE predicate per partition (none when one partition reads everything), with
    /// Spark's semantics: the first also takes NULLs and everything below the lower bound, the
    /// last everything above the upper bound, so every row is read exactly once.
    pub fn predicates(&self, column_sql: &str) -> Vec<Option<String>> {
        let (lo, hi) = (self.lower.value() as i128, self.upper.value() as i128);
        let num = (self.num as i128).min(hi - lo).max(1);
        if num == 1 {
            return vec![None];
        }
        let stride = (hi - lo) / num;
        let mut out = Vec::with_capacity(num as usize);
        for i in 0..num {
            let start = self.lower.with_value((lo + stride * i) as i64).sql();
            let end = self.lower.with_value((lo + stride * (i + 1)) as i64).sql();
            out.push(Some(if i == 0 {
                format!("{column_sql} < {end} OR {column_sql} IS NULL")
            } else if i == num - 1 {
                format!("{column_sql} >= {start}")
            } else {
                format!("{column_sql} >= {start} AND {column_sql} < {end}")
            }));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_move_to_the_secret_options() {
        let (u, p) = remove_url_password("postgres://alice:s%40cret@db:5432/app?sslmode=disable");
        assert_eq!(u, "postgres://alice@db:5432/app?sslmode=disable");
        assert_eq!(p.as_deref(), Some("s@cret"));
        let (u, p) = remove_url_password("jdbc:mysql://db:3306/app?user=bob&password=pw1");
        assert_eq!(u, "jdbc:mysql://db:3306/app?user=bob");
        assert_eq!(p.as_deref(), Some("pw1"));
        let (u, p) = remove_url_password("postgres://db/app");
        assert_eq!((u.as_str(), p), ("postgres://db/app", None));

        let opts: BTreeMap<String, String> =
            [("url".to_string(), "postgres://a:pw@h/d".to_string()), ("dbtable".into(), "t".into())].into();
        let (plain, secret) = split_options(REMOTE_OPTIONS, &opts);
        assert_eq!(plain["url"], "postgres://a@h/d");
        assert_eq!(secret["password"], "pw");
    }

    #[test]
    fn partitions_cover_every_row_once() {
        let spec = PartitionSpec { column: "id".into(), lower: Bound::Int(0), upper: Bound::Int(100), num: 4 };
        let p = spec.predicates("\"id\"");
        assert_eq!(
            p,
            vec![
                Some("\"id\" < 25 OR \"id\" IS NULL".to_string()),
                Some("\"id\" >= 25 AND \"id\" < 50".to_string()),
                Some("\"id\" >= 50 AND \"id\" < 75".to_string()),
                Some("\"id\" >= 75".to_string()),
            ]
        );
        let d = PartitionSpec {
            column: "d".into(),
            lower: Bound::parse("2020-01-01").unwrap(),
            upper: Bound::parse("2020-01-03").unwrap(),
            num: 8,
        };
        assert_eq!(d.predicates("d"), vec![Some("d < DATE '2020-01-02' OR d IS NULL".into()), Some("d >= DATE '2020-01-02'".into())]);
    }

    #[test]
    fn out_of_range_timeouts_and_pool_sizes_are_refused_with_the_range() {
        let opts = |k: &str, v: &str| -> HashMap<String, String> {
            [("url".to_string(), "postgres://h/d".to_string()), ("dbtable".into(), "t".into()), (k.into(), v.into())].into()
        };
        for (k, v) in [
            ("connect_timeout", "1e100"),
            ("connect_timeout", "inf"),
            ("connect_timeout", "-1"),
            ("querytimeout", "1e30"),
            ("liveness_interval", "1e100"),
            ("pool_size", "18446744073709551615"),
            ("pool_size", "18446744073709551616"),
            ("pool_size", "0"),
            ("pool_size", "2305843009213693951"),
        ] {
            let e = RemoteOptions::parse(&opts(k, v), "t").err().unwrap_or_else(|| panic!("{k} = {v} was accepted"));
            assert_eq!(e.kind, ErrorKind::InvalidOption, "{k} = {v}");
            assert!(e.message.contains("between"), "{k} = {v}: {}", e.message);
        }
        let o = RemoteOptions::parse(&opts("connect_timeout", "3600"), "t").unwrap();
        assert_eq!(o.connect_timeout, Duration::from_secs(3600));
        assert_eq!(RemoteOptions::parse(&opts("pool_size", "1024"), "t").unwrap().pool_size, 1024);
        let o = RemoteOptions::parse(&opts("liveness_interval", "0"), "t").unwrap();
        assert_eq!((o.liveness_interval, o.connect_timeout), (None, DEFAULT_CONNECT_TIMEOUT));
    }

    #[test]
    fn env_references_resolve_when_opened() {
        // SAFETY: tests in this module do not read the environment concurrently with this write.
        unsafe { std::env::set_var("BOWMAN_TEST_REMOTE_PW", "from-env") };
        let o: HashMap<String, String> = [
            ("URL".to_string(), "postgres://h/d".to_string()),
            ("dbtable".into(), "t".into()),
            ("password".into(), "${env:BOWMAN_TEST_REMOTE_PW}".into()),
        ]
        .into();
        let parsed = RemoteOptions::parse(&o, "x").unwrap();
        assert_eq!(parsed.password.as_deref(), Some("from-env"));
        assert!(!format!("{parsed:?}").contains("from-env"));
        let missing: HashMap<String, String> =
            [("url".to_string(), "${env:BOWMAN_NO_SUCH_VAR}".to_string()), ("dbtable".into(), "t".into())].into();
        assert!(RemoteOptions::parse(&missing, "x").unwrap_err().message.contains("BOWMAN_NO_SUCH_VAR"));
    }
}
